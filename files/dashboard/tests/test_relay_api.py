"""The relay API: register, heartbeat and security events with a relay token; bad input gets a
clear 4xx naming the problem."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import (
    ApiToken,
    Attachment,
    AuditEntry,
    Heartbeat,
    Relay,
    SecurityEvent,
    utcnow,
)
from altmesh_dashboard.tokens import hash_token, revoke_token
from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from sqlalchemy import func, select

PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(50, 82))).decode()
ADDRESS = address_of(PUBLIC_KEY)


def registration(name: str = "relay-1", **changes: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "public_key": PUBLIC_KEY,
        "address": ADDRESS,
        "endpoints": [{"host": "192.0.2.10", "port": 7000}],
    }
    body.update(changes)
    return body


def heartbeat(**changes: Any) -> dict[str, Any]:
    body = {
        "load": 0.25,
        "active_streams": 3,
        "bytes_in": 1000,
        "bytes_out": 2000,
        "version": "0.1.0",
        "links": [{"peer": "relay-2", "state": "up", "rtt_ms": 12.5}],
    }
    body.update(changes)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token(relay_token: Callable[[str], str]) -> str:
    return relay_token("relay-1")


def test_register_creates_the_relay_and_audits_it(
    client: FlaskClient, app: Flask, token: str
) -> None:
    response = client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    assert response.status_code == 201
    body = response.get_json()
    assert body["relay"]["name"] == "relay-1"
    assert body["relay"]["state"] == "down"  # registered, no heartbeat yet
    assert body["dns"] == "not configured"
    with app.app_context():
        relay = get_session().scalar(select(Relay))
        assert relay is not None and relay.address == ADDRESS
        entry = get_session().scalar(
            select(AuditEntry).where(AuditEntry.action == "relay.register")
        )
        assert entry is not None
        assert entry.actor == "relay:relay-1"
        assert entry.before is None and entry.after["address"] == ADDRESS


def test_re_registering_with_a_new_key_updates_and_audits_before_and_after(
    client: FlaskClient, app: Flask, token: str
) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    response = client.post(
        "/api/v1/relays/register",
        json=registration(public_key=OTHER_KEY, address=address_of(OTHER_KEY)),
        headers=bearer(token),
    )
    assert response.status_code == 200
    with app.app_context():
        entry = get_session().scalar(select(AuditEntry).where(AuditEntry.action == "relay.update"))
        assert entry is not None
        assert entry.before["address"] == ADDRESS
        assert entry.after["address"] == address_of(OTHER_KEY)
        assert entry.after["public_key"] == OTHER_KEY


def test_heartbeat_updates_status_links_and_history(
    client: FlaskClient, app: Flask, token: str
) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    response = client.post("/api/v1/relays/heartbeat", json=heartbeat(), headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["state"] == "up"
    client.post(
        "/api/v1/relays/heartbeat",
        json=heartbeat(load=0.5, links=[{"peer": "relay-3", "state": "down"}]),
        headers=bearer(token),
    )
    with app.app_context():
        relay = get_session().scalar(select(Relay))
        assert relay is not None
        assert relay.load == 0.5
        assert relay.links == [{"peer": "relay-3", "state": "down", "rtt_ms": None}]
        assert get_session().scalar(select(func.count()).select_from(Heartbeat)) == 2


def test_a_heartbeat_reads_back_through_the_orm_exactly_as_sent(
    client: FlaskClient, app: Flask, token: str
) -> None:
    """Heartbeats are written on the driver's cursor (heartbeats.py), everything else reads them
    through the ORM: times come back aware UTC, JSON links, big counters and non-ASCII text
    unchanged, and the attached set is replaced when it changes."""
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    attached = [address_of(base64.b64encode(bytes([n]) * 32).decode()) for n in (7, 8)]
    sent = heartbeat(
        bytes_in=2**62,
        bytes_out=2**53 + 1,
        version="0.1.0-\u00e9t\u00e9",
        links=[
            {"peer": "relay-3", "state": "connecting"},
            {"peer": "relay-2", "state": "up", "rtt_ms": 0.125},
        ],
        attached=attached,
    )
    before = utcnow()
    assert (
        client.post("/api/v1/relays/heartbeat", json=sent, headers=bearer(token)).status_code == 200
    )
    after = utcnow()
    smaller = heartbeat(attached=attached[:1])
    assert (
        client.post("/api/v1/relays/heartbeat", json=smaller, headers=bearer(token)).status_code
        == 200
    )
    with app.app_context():
        db = get_session()
        relay = db.scalar(select(Relay))
        assert relay is not None
        first, second = db.scalars(select(Heartbeat).order_by(Heartbeat.id)).all()
        assert first.received_at.tzinfo is not None
        assert before <= first.received_at <= after
        assert relay.last_heartbeat_at == second.received_at
        assert (first.bytes_in, first.bytes_out, first.version) == (
            2**62,
            2**53 + 1,
            "0.1.0-\u00e9t\u00e9",
        )
        assert first.links == [
            {"peer": "relay-2", "state": "up", "rtt_ms": 0.125},
            {"peer": "relay-3", "state": "connecting", "rtt_ms": None},
        ]
        assert db.scalars(select(Attachment.address)).all() == attached[:1]


def test_heartbeat_history_is_trimmed_to_the_configured_length(
    make_app: Callable[..., Flask],
    relay_token: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import altmesh_dashboard.heartbeats

    # Trimming runs on a random 1 in 50 heartbeats; make this run's draws all "trim now".
    monkeypatch.setattr(altmesh_dashboard.heartbeats.random, "random", lambda: 0.0)
    app = make_app(HEARTBEAT_HISTORY=10)
    client = app.test_client()
    tokens = {name: relay_token(name) for name in ("relay-1", "relay-2")}
    for name, token in tokens.items():
        client.post("/api/v1/relays/register", json=registration(name), headers=bearer(token))
    for _ in range(15):
        for token in tokens.values():  # interleaved, as many relays' heartbeats are
            client.post("/api/v1/relays/heartbeat", json=heartbeat(), headers=bearer(token))
    with app.app_context():
        kept = (
            get_session()
            .execute(select(Heartbeat.relay_id, func.count()).group_by(Heartbeat.relay_id))
            .all()
        )
    assert sorted(count for _, count in kept) == [10, 10]


def test_security_events_are_stored(client: FlaskClient, app: Flask, token: str) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    events = [
        {
            "id": "e-1",
            "time": "2026-01-31T12:00:00Z",
            "kind": "handshake_failure",
            "severity": "warning",
            "peer": "198.51.100.7:4444",
            "detail": {"reason": "bad MAC"},
        },
        {"id": "e-2", "time": "2026-01-31T12:00:01+00:00", "kind": "replayed_handshake"},
    ]
    response = client.post("/api/v1/relays/events", json={"events": events}, headers=bearer(token))
    assert response.status_code == 202
    assert response.get_json() == {"accepted": 2, "duplicates": 0}
    with app.app_context():
        stored = get_session().scalars(select(SecurityEvent).order_by(SecurityEvent.id)).all()
        assert [event.kind for event in stored] == ["handshake_failure", "replayed_handshake"]
        assert stored[1].severity == "warning"
        assert stored[0].detail == {"reason": "bad MAC"}


def test_heartbeat_before_registration_is_a_conflict(client: FlaskClient, token: str) -> None:
    response = client.post("/api/v1/relays/heartbeat", json=heartbeat(), headers=bearer(token))
    assert response.status_code == 409
    assert "register first" in response.get_json()["error"]


def test_a_token_cannot_register_another_relay(client: FlaskClient, token: str) -> None:
    response = client.post(
        "/api/v1/relays/register", json=registration(name="relay-2"), headers=bearer(token)
    )
    assert response.status_code == 403
    assert response.get_json()["field"] == "name"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer amr_not-a-real-token"}, {"Authorization": "Basic abc"}],
    ids=["no-header", "unknown-token", "wrong-scheme"],
)
def test_requests_without_a_valid_token_are_refused(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    for path in ("/api/v1/relays/register", "/api/v1/relays/heartbeat", "/api/v1/relays/events"):
        response = client.post(path, json={}, headers=headers)
        assert response.status_code == 401, path
        assert "token" in response.get_json()["error"]


def test_a_revoked_token_is_refused(client: FlaskClient, app: Flask, token: str) -> None:
    assert (
        client.post(
            "/api/v1/relays/register", json=registration(), headers=bearer(token)
        ).status_code
        == 201
    )
    with app.app_context():
        session = get_session()
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        assert row is not None
        revoke_token(session, row.id)
        session.commit()
    response = client.post("/api/v1/relays/heartbeat", json=heartbeat(), headers=bearer(token))
    assert response.status_code == 401


def test_tokens_are_stored_only_as_hashes(app: Flask, token: str) -> None:
    with app.app_context():
        row = get_session().scalar(select(ApiToken))
        assert row is not None
        assert row.token_hash == hash_token(token)
        assert token not in json.dumps(
            {column.name: str(getattr(row, column.name)) for column in ApiToken.__table__.columns}
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (registration(name="Relay_1"), "name"),
        (registration(public_key="not base64!"), "public_key"),
        (registration(public_key=base64.b64encode(b"short").decode()), "public_key"),
        (registration(address="10.0.0.1"), "address"),
        (registration(endpoints=[]), "endpoints"),
        (registration(endpoints=[{"host": "x", "port": 70000}]), "endpoints[0].port"),
        (registration(extra=1), "extra"),
        ({"name": "relay-1"}, "public_key"),
    ],
)
def test_malformed_registrations_name_the_field(
    client: FlaskClient, token: str, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/relays/register", json=body, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["field"] == field
    assert field in response.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (heartbeat(load=1.5), "load"),
        (heartbeat(load="high"), "load"),
        (heartbeat(active_streams=-1), "active_streams"),
        # Above what the 32-bit column holds: a 422 naming the field, never a 500.
        (heartbeat(active_streams=2**31), "active_streams"),
        (heartbeat(bytes_in=True), "bytes_in"),
        (heartbeat(links=[{"peer": "relay-2", "state": "sideways"}]), "links[0].state"),
        (heartbeat(links=[{"peer": "relay-2", "state": "up", "rtt_ms": -3}]), "links[0].rtt_ms"),
        (heartbeat(links="relay-2"), "links"),
        ({"load": 0.1}, "active_streams"),
        ([1, 2, 3], "body"),
    ],
)
def test_malformed_heartbeats_name_the_field(
    client: FlaskClient, token: str, body: Any, field: str
) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    response = client.post("/api/v1/relays/heartbeat", json=body, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["field"] == field


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([{"id": "a", "time": "yesterday", "kind": "x"}], "events[0].time"),
        ([{"id": "a", "time": "2026-01-31T12:00:00", "kind": "x"}], "events[0].time"),
        ([{"id": "a", "time": "2026-01-31T12:00:00Z", "kind": "Bad Kind"}], "events[0].kind"),
        (
            [{"id": "a", "time": "2026-01-31T12:00:00Z", "kind": "x", "severity": "meh"}],
            "events[0].severity",
        ),
        ([{"time": "2026-01-31T12:00:00Z", "kind": "x"}], "events[0].id"),
        ([{"id": "a b", "time": "2026-01-31T12:00:00Z", "kind": "x"}], "events[0].id"),
        ([{"id": "a" * 65, "time": "2026-01-31T12:00:00Z", "kind": "x"}], "events[0].id"),
        ([], "events"),
    ],
)
def test_malformed_event_batches_name_the_field(
    client: FlaskClient, token: str, events: list[Any], field: str
) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    response = client.post("/api/v1/relays/events", json={"events": events}, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["field"] == field


def test_body_that_is_not_json_is_a_400(client: FlaskClient, token: str) -> None:
    response = client.post(
        "/api/v1/relays/register",
        data="{not json",
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("the body is not valid JSON")


def test_body_of_another_type_is_a_415(client: FlaskClient, token: str) -> None:
    response = client.post("/api/v1/relays/register", data="name=relay-1", headers=bearer(token))
    assert response.status_code == 415
    assert "application/json" in response.get_json()["error"]


def test_oversized_body_is_a_413(client: FlaskClient, app: Flask, token: str) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    too_big = app.config["API_MAX_BODY_BYTES"] + 1
    events = [
        {"id": f"e{i}", "time": "2026-01-31T12:00:00Z", "kind": "x", "detail": {"pad": "a" * 2000}}
        for i in range(too_big // 2000 + 1)
    ]
    response = client.post("/api/v1/relays/events", json={"events": events}, headers=bearer(token))
    assert response.status_code == 413
    assert "error" in response.get_json()


def test_too_many_events_in_one_batch_is_refused(client: FlaskClient, token: str) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    events = [{"id": f"e{i}", "time": "2026-01-31T12:00:00Z", "kind": "x"} for i in range(501)]
    response = client.post("/api/v1/relays/events", json={"events": events}, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["field"] == "events"


def test_network_prefix_restricts_relay_addresses(
    make_app: Callable[..., Flask], relay_token: Callable[[str], str]
) -> None:
    app = make_app(NETWORK_PREFIX="fd00:1:2::/48")
    client = app.test_client()
    token = relay_token("relay-1")
    outside = client.post(
        "/api/v1/relays/register",
        json=registration(address=address_of(PUBLIC_KEY, "fd99::/48")),
        headers=bearer(token),
    )
    assert outside.status_code == 422
    assert "fd00:1:2::/48" in outside.get_json()["error"]
    inside = client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    assert inside.status_code == 201


def test_openapi_document_describes_every_relay_endpoint(admin_client: FlaskClient) -> None:
    document = admin_client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    assert {"/relays/register", "/relays/heartbeat", "/relays/events"} <= set(document["paths"])
    assert document["components"]["schemas"]["HeartbeatReport"]["required"] == [
        "load",
        "active_streams",
        "bytes_in",
        "bytes_out",
        "version",
    ]


def test_relay_list_api_shows_state_for_logged_in_users(
    client: FlaskClient, viewer_client: FlaskClient, token: str
) -> None:
    client.post("/api/v1/relays/register", json=registration(), headers=bearer(token))
    client.post("/api/v1/relays/heartbeat", json=heartbeat(), headers=bearer(token))
    relays = viewer_client.get("/api/v1/relays").get_json()["relays"]
    assert [(relay["name"], relay["state"], relay["load"]) for relay in relays] == [
        ("relay-1", "up", 0.25)
    ]


def test_openapi_references_resolve_and_match_the_routes(
    app: Flask, admin_client: FlaskClient
) -> None:
    document = admin_client.get("/api/v1/openapi.json").get_json()
    text = json.dumps(document)
    for reference in set(re.findall(r'"\$ref": "#/components/schemas/([A-Za-z]+)"', text)):
        assert reference in document["components"]["schemas"], reference
    api_paths = {
        rule.rule.removeprefix("/api/v1")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
    }
    assert api_paths == set(document["paths"])


def test_heartbeats_from_many_threads_of_one_process_are_all_stored(
    app: Flask, relay_token: Callable[[str], str]
) -> None:
    """As in a gthread worker: threads answering heartbeats at the same moment (on SQLite they
    take turns to write) all succeed, and every heartbeat is in the history."""
    from concurrent.futures import ThreadPoolExecutor

    relays = 4
    threads_per_relay = 2
    beats_per_thread = 15
    tokens = []
    for index in range(relays):
        key = base64.b64encode(bytes([index + 100]) * 32).decode()
        tokens.append(relay_token(f"relay-{index}"))
        answer = app.test_client().post(
            "/api/v1/relays/register",
            json=registration(f"relay-{index}", public_key=key, address=address_of(key)),
            headers=bearer(tokens[index]),
        )
        assert answer.status_code == 201, answer.get_data(as_text=True)

    def send(worker: int) -> list[int]:
        client = app.test_client()
        token = tokens[worker % relays]
        return [
            client.post(
                "/api/v1/relays/heartbeat",
                json=heartbeat(active_streams=worker * 1000 + number),
                headers=bearer(token),
            ).status_code
            for number in range(beats_per_thread)
        ]

    with ThreadPoolExecutor(relays * threads_per_relay) as pool:
        statuses = [
            status
            for batch in pool.map(send, range(relays * threads_per_relay))
            for status in batch
        ]
    assert statuses == [200] * (relays * threads_per_relay * beats_per_thread)
    with app.app_context():
        stored = sorted(get_session().scalars(select(Heartbeat.active_streams)))
        expected = sorted(
            worker * 1000 + number
            for worker in range(relays * threads_per_relay)
            for number in range(beats_per_thread)
        )
        assert stored == expected
