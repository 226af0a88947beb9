"""The JSON API: relays register, send heartbeats and security events with their relay token
(`Authorization: Bearer amr_...`); services publish their name with a service token (`ams_...`);
people use the read endpoints with their login. Bodies are validated by the pydantic models of
`payloads` (the OpenAPI document is built from the same models)."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from altmesh_dashboard import heartbeats, liveness, relay_dns, services
from altmesh_dashboard.audit import record_audit
from altmesh_dashboard.auth.access import mark_access, role_required
from altmesh_dashboard.db import engine_of, get_session
from altmesh_dashboard.metrics import FAILURES, HEARTBEATS, REGISTRATIONS, SECURITY_EVENTS
from altmesh_dashboard.models import (
    ApiToken,
    Attachment,
    Relay,
    SecurityEvent,
    Service,
    utcnow,
)
from altmesh_dashboard.openapi import openapi_document
from altmesh_dashboard.payloads import (
    EventBatch,
    HeartbeatReport,
    PayloadError,
    Registration,
    ServiceRegistration,
    ServiceWithdrawal,
    parse,
)
from altmesh_dashboard.status import relay_state
from altmesh_dashboard.tokens import find_active_token, hash_token, well_formed

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

# The heartbeat counters, looked up once (a labels() call costs more than the increment).
_HEARTBEAT_ACCEPTED = HEARTBEATS.labels(result="accepted")
_HEARTBEAT_REJECTED = HEARTBEATS.labels(result="rejected")

F = TypeVar("F", bound=Callable[..., Any])


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
    if error.field == "body" and error.problem.startswith("is not valid JSON"):
        return jsonify(error=f"the body {error.problem}"), 400
    return jsonify(error=str(error), field=error.field), 422


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = current_app.config["API_MAX_BODY_BYTES"]


@bp.after_request
def _check_liveness_now_and_then(response: Response) -> Response:
    """API traffic arrives all the time; now and then (per process) it also checks that relays
    which stopped reporting have lost their SRV weight. The check runs after the answer is sent,
    so no caller waits for it; the timer-driven CLI command covers quiet periods."""
    if liveness.due(current_app._get_current_object()):  # type: ignore[attr-defined]
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        response.call_on_close(lambda: liveness.run_in_background_context(app))
    return response


def _presented_token() -> str:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def _refuse_token(kind: str) -> ApiError:
    FAILURES.labels(kind=f"{kind}_auth").inc()
    log.warning("%s API call refused: missing, unknown or revoked token", kind)
    return ApiError(401, f"a valid {kind} API token is required (Authorization: Bearer ...)")


def relay_token_required(view: F) -> F:
    """The caller must present an unrevoked relay token; the token row is g.api_token."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        presented = _presented_token()
        token = find_active_token(get_session(), presented, "relay") if presented else None
        if token is None:
            raise _refuse_token("relay")
        g.api_token = token
        return view(*args, **kwargs)

    return mark_access("relay_token")(cast(F, wrapped))


def service_token_required(view: F) -> F:
    """The caller must present an unrevoked service token; the token row is g.api_token."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        presented = _presented_token()
        token = find_active_token(get_session(), presented, "service") if presented else None
        if token is None:
            raise _refuse_token("service")
        g.api_token = token
        return view(*args, **kwargs)

    return mark_access("service_token")(cast(F, wrapped))


def _json_body() -> bytes:
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
    return request.get_data(cache=False)


def _context() -> dict[str, Any]:
    prefix = current_app.config["NETWORK_PREFIX"]
    return {
        "network_prefix": _network(prefix) if prefix else None,
        "zone": current_app.config["DNS_ZONE"],
    }


@functools.lru_cache(maxsize=16)
def _network(prefix: str) -> ipaddress.IPv6Network:
    """The configured prefix, parsed once rather than on every API call."""
    return ipaddress.IPv6Network(prefix)


# ---------------------------------------------------------------------- relays


@bp.post("/relays/register")
@relay_token_required
def register() -> ResponseReturnValue:
    token = cast(ApiToken, g.api_token)
    registration = parse(Registration, _json_body(), **_context())
    if registration.name != token.relay_name:
        FAILURES.labels(kind="relay_auth").inc()
        raise ApiError(
            403,
            f"this token belongs to relay {token.relay_name!r}, not {registration.name!r}",
            "name",
        )
    db = get_session()
    host = f"{registration.name}.{current_app.config['DNS_ZONE']}"
    if db.scalar(select(Service.id).where(Service.name == host)) is not None:
        raise ApiError(
            409, f"{host} is a service's name in the zone; a relay cannot take it", "name"
        )
    relay = db.scalar(select(Relay).where(Relay.name == registration.name))
    before = relay.audit_view() if relay else None
    created = relay is None
    if relay is None:
        relay = Relay(name=registration.name, public_key="", address="", endpoints=[], links=[])
        db.add(relay)
    relay.public_key = registration.public_key
    relay.address = registration.address
    relay.endpoints = [endpoint.model_dump() for endpoint in registration.endpoints]
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
    return jsonify(relay=relay_json(relay), dns=dns_result), 201 if created else 200


@bp.post("/relays/heartbeat")
@mark_access("relay_token")
def heartbeat() -> ResponseReturnValue:
    """The hot path (every relay, every few seconds): see `heartbeats` for what one costs."""
    presented = _presented_token()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with heartbeats.HeartbeatStore(engine_of(app)) as store:
        caller = None
        if presented and well_formed(presented, "relay"):
            caller = store.find_caller(hash_token(presented))
        if caller is None or caller.revoked or caller.kind != "relay":
            _HEARTBEAT_REJECTED.inc()
            raise _refuse_token("relay")
        try:
            report = parse(HeartbeatReport, _json_body(), **_context())
            if caller.relay_id is None:
                raise ApiError(
                    409, f"relay {caller.relay_name!r} is not registered: register first"
                )
        except (PayloadError, ApiError, HTTPException):
            _HEARTBEAT_REJECTED.inc()
            raise
        now = utcnow()
        with store.writing():
            store.store(caller, report, now, app.config["HEARTBEAT_HISTORY"])
            store.commit()
    _HEARTBEAT_ACCEPTED.inc()
    if relay_dns.weight_needs_update(
        caller.published_weight, caller.weight_published_at, report.load, now
    ):
        relay = get_session().get(Relay, caller.relay_id)
        if relay is not None:
            relay_dns.update_weight(relay)
    # The same small answer every time: serialised directly, without Flask's JSON provider.
    interval = max(app.config["RELAY_STALE_AFTER_SECONDS"] // 3, 1)
    return Response(
        json.dumps({"state": "up", "heartbeat_interval_seconds": interval}),
        mimetype="application/json",
    )


def _token_relay(token: ApiToken) -> Relay:
    relay = get_session().scalar(select(Relay).where(Relay.name == token.relay_name))
    if relay is None:
        raise ApiError(409, f"relay {token.relay_name!r} is not registered: register first")
    return relay


@bp.post("/relays/events")
@relay_token_required
def events() -> ResponseReturnValue:
    """Store a batch; events whose (relay, id) is already stored are skipped. INSERT ... ON
    CONFLICT DO NOTHING makes that safe when two workers get the same batch at once: the unique
    constraint decides, and each row is stored by exactly one of them."""
    token = cast(ApiToken, g.api_token)
    batch = parse(EventBatch, _json_body(), **_context())
    relay = _token_relay(token)
    db = get_session()
    rows = [
        {
            "relay_id": relay.id,
            "event_id": event.id,
            "occurred_at": event.time,
            "received_at": utcnow(),
            "kind": event.kind,
            "severity": event.severity,
            "peer": event.peer,
            "detail": event.detail,
        }
        for event in batch.events
    ]
    dialect = db.get_bind().dialect.name
    insert_ = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert_(SecurityEvent)
        .on_conflict_do_nothing(index_elements=["relay_id", "event_id"])
        .returning(SecurityEvent.id)
    )
    stored = 0
    for item in rows:  # one statement per event: RETURNING tells which were new
        stored += len(db.execute(statement, item).all())
    db.commit()
    SECURITY_EVENTS.inc(stored)
    return jsonify(accepted=stored, duplicates=len(rows) - stored), 202


def relay_json(relay: Relay, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    attached = get_session().scalar(
        select(func.count()).select_from(Attachment).where(Attachment.relay_id == relay.id)
    )
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
        "bytes_in": relay.bytes_in,
        "bytes_out": relay.bytes_out,
        "version": relay.version,
        "links": list(relay.links or []),
        "attached": attached or 0,
    }


@bp.get("/relays")
@role_required("viewer")
def list_relays() -> ResponseReturnValue:
    now = utcnow()
    relays = get_session().scalars(select(Relay).order_by(Relay.name))
    return jsonify(relays=[relay_json(relay, now) for relay in relays])


# -------------------------------------------------------------------- services


def _token_service(token: ApiToken, name: str) -> None:
    if name != token.service_name:
        FAILURES.labels(kind="service_auth").inc()
        raise ApiError(403, f"this token may publish only {token.service_name}, not {name}", "name")


@bp.post("/services/register")
@service_token_required
def register_service() -> ResponseReturnValue:
    token = cast(ApiToken, g.api_token)
    registration = parse(ServiceRegistration, _json_body(), **_context())
    _token_service(token, registration.name)
    try:
        service, changed, created = services.publish(
            registration.name, registration.public_key, registration.address, token
        )
    except services.ServiceConflict as error:
        raise ApiError(409, str(error), "name") from None
    except services.ServiceDnsUnavailable as error:
        raise ApiError(error.status, str(error)) from None
    return jsonify(
        service=service.audit_view(), dns="published", changed=changed
    ), 201 if created else 200


@bp.post("/services/withdraw")
@service_token_required
def withdraw_service() -> ResponseReturnValue:
    token = cast(ApiToken, g.api_token)
    withdrawal = parse(ServiceWithdrawal, _json_body(), **_context())
    _token_service(token, withdrawal.name)
    try:
        changed = services.withdraw(withdrawal.name, token)
    except services.ServiceDnsUnavailable as error:
        raise ApiError(error.status, str(error)) from None
    return jsonify(name=withdrawal.name, dns="withdrawn", changed=changed)


@bp.get("/openapi.json")
@role_required("viewer")
def openapi() -> ResponseReturnValue:
    return jsonify(openapi_document())
