"""The relay API (JSON): register, heartbeat, security events. Relays authenticate with their
API token (`Authorization: Bearer amr_...`); people use the read endpoints with their login."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import delete, select
from werkzeug.exceptions import BadRequest, HTTPException, UnsupportedMediaType

from altmesh_dashboard import relay_dns
from altmesh_dashboard.audit import record_audit
from altmesh_dashboard.auth.access import mark_access, role_required
from altmesh_dashboard.db import get_session
from altmesh_dashboard.metrics import FAILURES, HEARTBEATS, REGISTRATIONS, SECURITY_EVENTS
from altmesh_dashboard.models import ApiToken, Heartbeat, Link, Relay, SecurityEvent, utcnow
from altmesh_dashboard.openapi import openapi_document
from altmesh_dashboard.payloads import (
    PayloadError,
    parse_events,
    parse_heartbeat,
    parse_registration,
)
from altmesh_dashboard.status import relay_state
from altmesh_dashboard.tokens import find_active_token

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

PRUNE_EVERY = 50  # heartbeats between history trims (on average), to keep the hot path cheap


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@bp.errorhandler(ApiError)
def _api_error(error: ApiError) -> ResponseReturnValue:
    body: dict[str, Any] = {"error": error.message}
    if error.field:
        body["field"] = error.field
    return jsonify(body), error.status


@bp.errorhandler(PayloadError)
def _payload_error(error: PayloadError) -> ResponseReturnValue:
    FAILURES.labels(kind="bad_payload").inc()
    return jsonify(error=str(error), field=error.field), 422


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = current_app.config["API_MAX_BODY_BYTES"]


def relay_token_required(view: F) -> F:
    """The caller must present an unrevoked relay API token; the token's relay is g.api_token."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        token = None
        if scheme.lower() == "bearer" and presented:
            token = find_active_token(get_session(), presented.strip())
        if token is None:
            FAILURES.labels(kind="relay_auth").inc()
            log.warning("relay API call refused: missing, unknown or revoked token")
            raise ApiError(401, "a valid relay API token is required (Authorization: Bearer ...)")
        g.api_token = token
        return view(*args, **kwargs)

    return mark_access("relay_token")(cast(F, wrapped))


def _json_body() -> Any:
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
    try:
        return request.get_json()
    except BadRequest:
        FAILURES.labels(kind="bad_payload").inc()
        raise ApiError(400, "the body is not valid JSON") from None


def _token_relay(token: ApiToken) -> Relay:
    relay = get_session().scalar(select(Relay).where(Relay.name == token.relay_name))
    if relay is None:
        raise ApiError(409, f"relay {token.relay_name!r} is not registered: register first")
    return relay


@bp.post("/relays/register")
@relay_token_required
def register() -> ResponseReturnValue:
    token = cast(ApiToken, g.api_token)
    registration = parse_registration(_json_body(), current_app.config["NETWORK_PREFIX"])
    if registration.name != token.relay_name:
        FAILURES.labels(kind="relay_auth").inc()
        raise ApiError(
            403,
            f"this token belongs to relay {token.relay_name!r}, not {registration.name!r}",
            "name",
        )
    db = get_session()
    relay = db.scalar(select(Relay).where(Relay.name == registration.name))
    before = relay.audit_view() if relay else None
    created = relay is None
    if relay is None:
        relay = Relay(name=registration.name, public_key="", address="", endpoints=[])
        db.add(relay)
    relay.public_key = registration.public_key
    relay.address = registration.address
    relay.endpoints = registration.endpoints
    token.last_used_at = utcnow()
    after = relay.audit_view()
    if before != after:
        action = "relay.register" if created else "relay.update"
        record_audit(
            f"relay:{relay.name}", action, f"relay:{relay.name}", before, after, commit=False
        )
    db.commit()
    REGISTRATIONS.labels(result="accepted").inc()
    dns_result = relay_dns.publish(relay)
    return jsonify(relay=_relay_json(relay), dns=dns_result), 201 if created else 200


@bp.post("/relays/heartbeat")
@relay_token_required
def heartbeat() -> ResponseReturnValue:
    token = cast(ApiToken, g.api_token)
    try:
        report = parse_heartbeat(_json_body())
        relay = _token_relay(token)
    except (PayloadError, ApiError, HTTPException):
        HEARTBEATS.labels(result="rejected").inc()
        raise
    db = get_session()
    now = utcnow()
    previous_load = relay.load
    relay.last_heartbeat_at = now
    relay.load = report.load
    relay.active_streams = report.active_streams
    relay.bytes_in = report.bytes_in
    relay.bytes_out = report.bytes_out
    relay.version = report.version
    links_by_peer = {link.peer_name: link for link in relay.links}
    for reported in report.links:
        link = links_by_peer.pop(reported.peer, None)
        if link is None:
            link = Link(peer_name=reported.peer, state=reported.state)
            relay.links.append(link)
        link.state = reported.state
        link.rtt_ms = reported.rtt_ms
        link.updated_at = now
    for gone in links_by_peer.values():
        relay.links.remove(gone)
    beat = Heartbeat(
        relay_id=relay.id,
        received_at=now,
        load=report.load,
        active_streams=report.active_streams,
        bytes_in=report.bytes_in,
        bytes_out=report.bytes_out,
        version=report.version,
        links=[
            {"peer": link.peer, "state": link.state, "rtt_ms": link.rtt_ms} for link in report.links
        ],
    )
    db.add(beat)
    # Trim now and then, at random: ids are shared by all relays, so "every 50th id" could
    # forever miss a relay whose heartbeats interleave with others' in a fixed pattern.
    if random.random() < 1 / PRUNE_EVERY:
        db.flush()
        _trim_history(relay.id)
    db.commit()
    HEARTBEATS.labels(result="accepted").inc()
    if previous_load != report.load:
        relay_dns.update_weight(relay)
    return jsonify(
        state=relay_state(relay.last_heartbeat_at, now, current_app.config),
        heartbeat_interval_seconds=max(current_app.config["RELAY_STALE_AFTER_SECONDS"] // 3, 1),
    )


def _trim_history(relay_id: int) -> None:
    db = get_session()
    keep = current_app.config["HEARTBEAT_HISTORY"]
    cutoff = db.scalar(
        select(Heartbeat.id)
        .where(Heartbeat.relay_id == relay_id)
        .order_by(Heartbeat.id.desc())
        .offset(keep)
        .limit(1)
    )
    if cutoff is not None:
        db.execute(delete(Heartbeat).where(Heartbeat.relay_id == relay_id, Heartbeat.id <= cutoff))


@bp.post("/relays/events")
@relay_token_required
def events() -> ResponseReturnValue:
    token = cast(ApiToken, g.api_token)
    reports = parse_events(_json_body())
    relay = _token_relay(token)
    db = get_session()
    db.add_all(
        SecurityEvent(
            relay_id=relay.id,
            occurred_at=report.occurred_at,
            kind=report.kind,
            severity=report.severity,
            peer=report.peer,
            detail=report.detail,
        )
        for report in reports
    )
    db.commit()
    SECURITY_EVENTS.inc(len(reports))
    return jsonify(accepted=len(reports)), 202


def _relay_json(relay: Relay, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "name": relay.name,
        "public_key": relay.public_key,
        "address": relay.address,
        "endpoints": relay.endpoints,
        "state": relay_state(relay.last_heartbeat_at, now, current_app.config),
        "last_heartbeat_at": relay.last_heartbeat_at.isoformat()
        if relay.last_heartbeat_at
        else None,
        "load": relay.load,
        "active_streams": relay.active_streams,
        "version": relay.version,
        "links": [
            {"peer": link.peer_name, "state": link.state, "rtt_ms": link.rtt_ms}
            for link in relay.links
        ],
    }


@bp.get("/relays")
@role_required("viewer")
def list_relays() -> ResponseReturnValue:
    now = utcnow()
    relays = get_session().scalars(select(Relay).order_by(Relay.name))
    return jsonify(relays=[_relay_json(relay, now) for relay in relays])


@bp.get("/openapi.json")
@role_required("viewer")
def openapi() -> ResponseReturnValue:
    return jsonify(openapi_document())
