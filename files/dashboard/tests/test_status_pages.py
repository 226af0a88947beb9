"""Relay overview, detail and history, the mesh picture, security events with filters and the
audit log: all rendered on the server."""

from __future__ import annotations

import base64
import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import AuditEntry, Relay, SecurityEvent, utcnow
from altmesh_dashboard.relays import link_colour, time_label
from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from sqlalchemy import select

SVG = "{http://www.w3.org/2000/svg}"


def add_relay(app: Flask, name: str, age_seconds: float | None, **fields: object) -> None:
    with app.app_context():
        session = get_session()
        relay = Relay(
            name=name,
            public_key=base64.b64encode(bytes(32)).decode(),
            address=f"fd00::{len(name)}",
            endpoints=[{"host": "192.0.2.1", "port": 7000}],
            last_heartbeat_at=None
            if age_seconds is None
            else utcnow() - dt.timedelta(seconds=age_seconds),
            **fields,
        )
        session.add(relay)
        session.commit()


def add_link(app: Flask, source: str, peer: str, state: str, rtt_ms: float | None) -> None:
    with app.app_context():
        session = get_session()
        relay = session.scalar(select(Relay).where(Relay.name == source))
        assert relay is not None
        relay.links = sorted(
            [*relay.links, {"peer": peer, "state": state, "rtt_ms": rtt_ms}],
            key=lambda link: str(link["peer"]),
        )
        session.commit()


def test_overview_classifies_relays_by_heartbeat_age(
    app: Flask, viewer_client: FlaskClient
) -> None:
    add_relay(app, "fresh", 5, load=0.42, version="1.2.3")
    add_relay(app, "late", 120)
    add_relay(app, "gone", 3600)
    add_relay(app, "silent", None)
    html = viewer_client.get("/relays/").get_data(as_text=True)
    assert "1 up" in html and "1 stale" in html and "2 down" in html
    rows = {
        name: html.split(f'data-relay="{name}"')[1].split("</tr>")[0]
        for name in ("fresh", "late", "gone", "silent")
    }
    assert 'class="state up"' in rows["fresh"] and "42 %" in rows["fresh"]
    assert "1.2.3" in rows["fresh"]
    assert 'class="state stale"' in rows["late"]
    assert 'class="state down"' in rows["gone"]
    assert "never" in rows["silent"]


def test_relay_detail_shows_links_and_heartbeat_history(
    client: FlaskClient, viewer_client: FlaskClient, relay_token: Callable[[str], str]
) -> None:
    token = relay_token("relay-1")
    auth = {"Authorization": f"Bearer {token}"}
    client.post(
        "/api/v1/relays/register",
        headers=auth,
        json={
            "name": "relay-1",
            "public_key": base64.b64encode(bytes(32)).decode(),
            "address": address_of(base64.b64encode(bytes(32)).decode()),
            "endpoints": [{"host": "relay1.example", "port": 7000}],
        },
    )
    for load in (0.1, 0.2, 0.3):
        client.post(
            "/api/v1/relays/heartbeat",
            headers=auth,
            json={
                "load": load,
                "active_streams": 1,
                "bytes_in": 5,
                "bytes_out": 6,
                "version": "9.9.9",
                "links": [{"peer": "relay-2", "state": "up", "rtt_ms": 7.25}],
            },
        )
    html = viewer_client.get("/relays/relay-1").get_data(as_text=True)
    assert "relay1.example:7000" in html
    assert "7.2 ms" in html or "7.3 ms" in html
    history = html.split('id="history"')[1].split("</table>")[0]
    assert history.count("<tr>") == 4  # header + three heartbeats
    assert "<polyline" in html  # the load chart


def test_unknown_relay_detail_is_a_404_with_a_message(viewer_client: FlaskClient) -> None:
    response = viewer_client.get("/relays/nope")
    assert response.status_code == 404
    assert "no relay named" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("state", "rtt", "colour"),
    [
        ("up", 10.0, "#27ae60"),
        ("up", 100.0, "#d4ac0d"),
        ("up", 400.0, "#e67e22"),
        ("down", None, "#c0392b"),
        ("connecting", None, "#7f8c8d"),
    ],
)
def test_link_colour_follows_state_and_rtt(state: str, rtt: float | None, colour: str) -> None:
    assert link_colour(state, rtt) == colour


@pytest.mark.parametrize(
    ("span_seconds", "label"),
    [
        (1.5, "23:04:08.6"),  # ticks 0.4 s apart: tenths, or they would repeat
        (4.0, "23:04:08"),
        (3000.0, "23:04:08"),  # 100 heartbeats 30 s apart
        (86400.0 * 3, "12-01 23:04"),  # a relay that was silent for days: the date counts
    ],
)
def test_load_chart_time_labels_are_as_precise_as_the_span_needs(
    span_seconds: float, label: str
) -> None:
    moment = dt.datetime(2026, 12, 1, 23, 4, 8, 650_000, tzinfo=dt.UTC)
    assert time_label(moment, span_seconds) == label


def test_mesh_svg_draws_relays_and_links_coloured_by_state_and_rtt(
    app: Flask, viewer_client: FlaskClient
) -> None:
    for name in ("a", "b", "c"):
        add_relay(app, name, 1)
    add_link(app, "a", "b", "up", 12.0)
    add_link(app, "b", "c", "up", 220.0)
    add_link(app, "c", "a", "down", None)
    add_link(app, "a", "unknown-peer", "up", 1.0)  # not a registered relay: drawn as unknown
    response = viewer_client.get("/relays/mesh.svg")
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own output
    nodes = {g.get("data-relay"): g.get("class") for g in root.iter(f"{SVG}g")}
    assert nodes == {"a": "node up", "b": "node up", "c": "node up", "unknown-peer": "node unknown"}
    lines = {
        (line.get("data-from"), line.get("data-to")): line
        for line in root.iter(f"{SVG}line")
        if line.get("class", "").startswith("link ")
    }
    assert set(lines) == {("a", "b"), ("b", "c"), ("c", "a"), ("a", "unknown-peer")}
    # No end reports the way back: each line's other half is drawn as "not reported".
    halves = {
        (line.get("data-from"), line.get("data-to"))
        for line in root.iter(f"{SVG}line")
        if line.get("class") == "unreported"
    }
    assert halves == {("b", "a"), ("c", "b"), ("a", "c"), ("unknown-peer", "a")}
    assert lines[("a", "b")].get("stroke") == "#27ae60"
    assert lines[("b", "c")].get("stroke") == "#e67e22"
    assert lines[("c", "a")].get("stroke") == "#c0392b"
    assert lines[("c", "a")].get("stroke-dasharray")
    page = viewer_client.get("/relays/mesh").get_data(as_text=True)
    assert "<svg" in page and "220.0 ms" in page


def test_security_events_can_be_filtered(app: Flask, viewer_client: FlaskClient) -> None:
    add_relay(app, "r1", 1)
    add_relay(app, "r2", 1)
    now = utcnow()
    with app.app_context():
        session = get_session()
        relays = {r.name: r for r in session.scalars(select(Relay))}
        for index, (relay, kind, severity, age) in enumerate(
            [
                ("r1", "handshake_failure", "warning", 60),
                ("r1", "replayed_handshake", "critical", 60),
                ("r2", "handshake_failure", "info", 3 * 86400),
            ]
        ):
            session.add(
                SecurityEvent(
                    relay_id=relays[relay].id,
                    event_id=f"e{index}",
                    kind=kind,
                    severity=severity,
                    occurred_at=now - dt.timedelta(seconds=age),
                    detail={},
                )
            )
        session.commit()

    def rows(query: str) -> list[str]:
        html = viewer_client.get("/events/" + query).get_data(as_text=True)
        body = html.split('id="events"')[1].split("<tbody>")[1].split("</tbody>")[0]
        return [row for row in body.split("<tr>") if "<td>" in row and "No events" not in row]

    assert len(rows("")) == 3
    assert len(rows("?relay=r1")) == 2
    assert len(rows("?kind=handshake_failure")) == 2
    assert len(rows("?severity=critical")) == 1
    assert len(rows("?period=24h")) == 2
    assert len(rows("?relay=r2&period=24h")) == 0


def test_forgetting_a_relay_is_audited_with_before_state(
    app: Flask, operator_client: FlaskClient, csrf_token_in: Callable[[str], str]
) -> None:
    add_relay(app, "old", 5000)
    token = csrf_token_in(operator_client.get("/relays/old").get_data(as_text=True))
    response = operator_client.post("/relays/old/forget", data={"csrf_token": token})
    assert response.status_code == 302
    with app.app_context():
        assert get_session().scalar(select(Relay).where(Relay.name == "old")) is None
        entry = get_session().scalar(select(AuditEntry).where(AuditEntry.action == "relay.forget"))
        assert entry is not None
        assert entry.actor.startswith("operator-")
        assert entry.before is not None and entry.before["name"] == "old"
        assert entry.after is None
    html = operator_client.get("/audit/").get_data(as_text=True)
    assert "relay.forget" in html and "relay:old" in html


def test_audit_log_has_no_route_that_changes_it(app: Flask) -> None:
    audit_rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("audit.")]
    assert audit_rules
    for rule in audit_rules:
        assert (rule.methods or set()) <= {"GET", "HEAD", "OPTIONS"}, rule


def test_audit_log_filters_by_action(app: Flask, admin_client: FlaskClient) -> None:
    from altmesh_dashboard.audit import record_audit

    with app.app_context():
        record_audit("cli:root", "token.create", "relay:r1", None, {"id": 1})
        record_audit("cli:root", "token.revoke", "relay:r1", {"revoked": False}, {"revoked": True})
    html = admin_client.get("/audit/?action=token.revoke").get_data(as_text=True)
    table = html.split('id="audit"')[1]
    assert "token.revoke" in table and "token.create" not in table


def test_audit_entries_outside_a_request_are_attributed_to_system(app: Flask) -> None:
    from altmesh_dashboard.audit import record_audit

    with app.app_context():
        entry = record_audit(None, "maintenance", "db", None, None)
        assert entry.actor == "system"
