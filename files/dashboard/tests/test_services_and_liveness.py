"""Against a real named: services publish and withdraw their name with a service token; relays
that stop reporting lose their SRV weight and get it back with their next heartbeat; names the
zone cannot serve (CNAMEs, delegations) are reported, not silently ignored; the dashboard's
editable record types are exactly what the bind_alt role lets its key update."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import yaml
from altmesh_dashboard.db import get_session
from altmesh_dashboard.dns.zone import EDITABLE_TYPES, ZoneClient, validate_record
from altmesh_dashboard.models import AuditEntry, Relay, utcnow
from altmesh_dashboard.tokens import create_service_token
from dns_support import DnsLab, dns_lab, query, wait_for_answer
from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from sqlalchemy import select, update

REPOSITORY = Path(__file__).resolve().parents[3]
SERVICE_KEY = base64.b64encode(b"d" * 32).decode()
RELAY_KEY = base64.b64encode(bytes(range(32))).decode()


def test_the_editable_types_are_what_the_bind_alt_role_grants_the_dashboard_key() -> None:
    defaults = yaml.safe_load((REPOSITORY / "roles/bind_alt/defaults/main.yml").read_text())
    assert defaults["bind_alt_dashboard_update_types"] == list(EDITABLE_TYPES)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    with dns_lab(tmp_path_factory.mktemp("named")) as running:
        yield running


@pytest.fixture
def dns_app(make_app: Callable[..., Flask], lab: DnsLab) -> Flask:
    return make_app(**lab.settings())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _service_token(app: Flask, name: str) -> str:
    with app.app_context():
        _row, token = create_service_token(get_session(), name, "test")
        get_session().commit()
    return token


def _register_service(client: FlaskClient, token: str, name: str, key: str = SERVICE_KEY) -> Any:
    body = {"name": name, "public_key": key, "address": address_of(key)}
    return client.post("/api/v1/services/register", json=body, headers=_bearer(token))


# ------------------------------------------------------------------- services


def test_a_service_publishes_its_address_and_key_and_can_withdraw_them(
    dns_app: Flask, lab: DnsLab
) -> None:
    client = dns_app.test_client()
    token = _service_token(dns_app, "web.alt.")
    first = _register_service(client, token, "web.alt")
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.get_json()["changed"] is True
    address = address_of(SERVICE_KEY)
    assert wait_for_answer(lab.named, "web.alt.", "AAAA", [address]) == [address]
    assert query(lab.named, "web.alt.", "TXT") == [f'"altmesh-key={SERVICE_KEY}"']

    again = _register_service(client, token, "web.alt.")  # idempotent
    assert again.status_code == 200
    assert again.get_json()["changed"] is False

    withdrawn = client.post(
        "/api/v1/services/withdraw", json={"name": "web.alt"}, headers=_bearer(token)
    )
    assert withdrawn.status_code == 200, withdrawn.get_data(as_text=True)
    assert withdrawn.get_json() == {"name": "web.alt.", "dns": "withdrawn", "changed": True}
    assert wait_for_answer(lab.named, "web.alt.", "AAAA", []) == []
    assert query(lab.named, "web.alt.", "TXT") == []
    with dns_app.app_context():
        actions = list(
            get_session().scalars(
                select(AuditEntry.action).where(AuditEntry.actor == "service:web.alt.")
            )
        )
    assert actions == ["service.register", "service.withdraw"]


def test_a_service_token_publishes_only_its_own_name_and_the_address_must_name_the_key(
    dns_app: Flask, lab: DnsLab
) -> None:
    client = dns_app.test_client()
    token = _service_token(dns_app, "api.alt.")
    other = _register_service(client, token, "other.alt")
    assert other.status_code == 403
    assert other.get_json()["field"] == "name"
    body = {
        "name": "api.alt",
        "public_key": SERVICE_KEY,
        "address": address_of(RELAY_KEY),
    }
    wrong = client.post("/api/v1/services/register", json=body, headers=_bearer(token))
    assert wrong.status_code == 422
    assert wrong.get_json()["field"] == "address"
    relay_token = client.post(
        "/api/v1/services/register", json=body, headers=_bearer("amr_" + "x" * 43)
    )
    assert relay_token.status_code == 401
    assert query(lab.named, "api.alt.", "AAAA") == []


def test_a_service_at_a_cname_or_below_a_delegation_is_refused_with_the_reason(
    dns_app: Flask, lab: DnsLab
) -> None:
    client = dns_app.test_client()
    cname = _register_service(client, _service_token(dns_app, "alias.alt."), "alias.alt")
    assert cname.status_code == 409
    assert "CNAME" in cname.get_json()["error"]
    zone = ZoneClient.from_config(lab.settings())
    zone.add(validate_record(zone.origin, "ns.deleg", 300, "A", "192.0.2.53"))  # glue first
    wait_for_answer(lab.named, "ns.deleg.alt.", "A", ["192.0.2.53"])
    zone.add(validate_record(zone.origin, "deleg", 300, "NS", "ns.deleg.alt."))
    below = _register_service(client, _service_token(dns_app, "x.deleg.alt."), "x.deleg.alt")
    assert below.status_code == 409
    assert "below the delegation deleg.alt." in below.get_json()["error"]


def test_the_services_page_shows_key_address_and_the_relay_a_service_is_attached_to(
    dns_app: Flask,
    lab: DnsLab,
    relay_token: Callable[[str], str],
    viewer_client: FlaskClient,
) -> None:
    client = dns_app.test_client()
    assert _register_service(
        client, _service_token(dns_app, "shop.alt."), "shop.alt"
    ).status_code in (200, 201)
    token = relay_token("relay-1")
    registration = {
        "name": "relay-1",
        "public_key": RELAY_KEY,
        "address": address_of(RELAY_KEY),
        "endpoints": [{"host": "192.0.2.10", "port": 7000}],
    }
    assert client.post(
        "/api/v1/relays/register", json=registration, headers=_bearer(token)
    ).status_code in (200, 201)
    beat = {
        "load": 0.2,
        "active_streams": 1,
        "bytes_in": 1,
        "bytes_out": 1,
        "version": "1",
        "attached": [address_of(SERVICE_KEY)],
    }
    assert (
        client.post("/api/v1/relays/heartbeat", json=beat, headers=_bearer(token)).status_code
        == 200
    )
    wait_for_answer(lab.named, "shop.alt.", "AAAA", [address_of(SERVICE_KEY)])
    html = unescape(viewer_client.get("/services/").get_data(as_text=True))
    row = html.split('data-service="shop.alt."')[1].split("</tr>")[0]
    assert address_of(SERVICE_KEY) in row and SERVICE_KEY in row
    assert 'href="/relays/relay-1"' in row
    assert "relay-1.alt." not in html  # a relay's own name is not a service


# ------------------------------------------------------------------- liveness


def _srv_weights(lab: DnsLab, relay: str) -> list[str]:
    return query(lab.named, f"{relay}._altmesh._tcp.alt.", "SRV")


def test_a_relay_that_stops_reporting_loses_its_srv_weight_and_regains_it_on_its_next_heartbeat(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    client = dns_app.test_client()
    token = relay_token("quiet")
    key = base64.b64encode(bytes(range(40, 72))).decode()
    registration = {
        "name": "quiet",
        "public_key": key,
        "address": address_of(key),
        "endpoints": [{"host": "192.0.2.44", "port": 7000}],
    }
    assert client.post(
        "/api/v1/relays/register", json=registration, headers=_bearer(token)
    ).status_code in (200, 201)
    beat = {"load": 0.0, "active_streams": 0, "bytes_in": 0, "bytes_out": 0, "version": "1"}
    assert (
        client.post("/api/v1/relays/heartbeat", json=beat, headers=_bearer(token)).status_code
        == 200
    )
    live = ["0 100 7000 ep0.quiet.alt."]
    assert wait_for_answer(lab.named, "quiet._altmesh._tcp.alt.", "SRV", live) == live

    # The relay falls silent: its last heartbeat is now older than RELAY_STALE_AFTER_SECONDS.
    with dns_app.app_context():
        get_session().execute(
            update(Relay)
            .where(Relay.name == "quiet")
            .values(last_heartbeat_at=utcnow() - dt.timedelta(seconds=200))
        )
        get_session().commit()
    result = dns_app.test_cli_runner().invoke(args=["relays", "check-liveness"])
    assert result.exit_code == 0, result.output
    assert "relay quiet stopped reporting: SRV weight set to 0" in result.output
    silent = ["0 0 7000 ep0.quiet.alt."]
    assert wait_for_answer(lab.named, "quiet._altmesh._tcp.alt.", "SRV", silent) == silent
    assert wait_for_answer(lab.named, "_altmesh._tcp.alt.", "SRV", silent)  # shared RRset too

    again = dns_app.test_cli_runner().invoke(args=["relays", "check-liveness"])
    assert "every relay with a weight above 0 is reporting" in again.output

    assert (
        client.post("/api/v1/relays/heartbeat", json=beat, headers=_bearer(token)).status_code
        == 200
    )
    assert wait_for_answer(lab.named, "quiet._altmesh._tcp.alt.", "SRV", live) == live


def test_api_traffic_of_other_relays_notices_a_silent_relay(
    make_app: Callable[..., Flask], lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    import altmesh_dashboard.liveness as liveness

    app = make_app(**lab.settings())
    client = app.test_client()
    tokens = {}
    for name, seed in (("gone", 80), ("busy", 120)):
        key = base64.b64encode(bytes(range(seed, seed + 32))).decode()
        tokens[name] = relay_token(name)
        body = {
            "name": name,
            "public_key": key,
            "address": address_of(key),
            "endpoints": [{"host": "192.0.2.45", "port": 7000 + seed}],
        }
        assert client.post(
            "/api/v1/relays/register", json=body, headers=_bearer(tokens[name])
        ).status_code in (200, 201)
    with app.app_context():
        get_session().execute(
            update(Relay)
            .where(Relay.name == "gone")
            .values(
                registered_at=utcnow() - dt.timedelta(seconds=500),
                last_heartbeat_at=utcnow() - dt.timedelta(seconds=500),
            )
        )
        get_session().commit()
    liveness._last_check.clear()  # this process has not checked yet
    beat = {"load": 0.5, "active_streams": 0, "bytes_in": 0, "bytes_out": 0, "version": "1"}
    response = client.post("/api/v1/relays/heartbeat", json=beat, headers=_bearer(tokens["busy"]))
    assert response.status_code == 200
    response.close()  # the check runs once the answer is sent (call_on_close)
    silent = ["0 0 7080 ep0.gone.alt."]
    assert wait_for_answer(lab.named, "gone._altmesh._tcp.alt.", "SRV", silent) == silent


# --------------------------------------------------------------- zone editing


def _operator(
    app: Flask, create_user: Callable[..., Any], login: Callable[..., None]
) -> FlaskClient:
    client = app.test_client()
    login(client, create_user("operator"))
    return client


def test_a_relay_named_like_a_cname_is_told_its_records_were_not_published(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    key = base64.b64encode(bytes(range(160, 192))).decode()
    body = {
        "name": "alias",  # the seed zone has alias CNAME www
        "public_key": key,
        "address": address_of(key),
        "endpoints": [{"host": "192.0.2.46", "port": 7000}],
    }
    response = dns_app.test_client().post(
        "/api/v1/relays/register", json=body, headers=_bearer(relay_token("alias"))
    )
    assert response.status_code == 201
    assert response.get_json()["dns"].startswith("failed: cannot publish relay alias")
    assert "CNAME" in response.get_json()["dns"]
    assert query(lab.named, "alias.alt.", "AAAA") == []


def test_the_last_apex_ns_cannot_be_changed_into_another_type_and_can_be_renamed(
    dns_app: Flask,
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
    csrf_token_in: Callable[[str], str],
) -> None:
    operator = _operator(dns_app, create_user, login)
    edit = operator.get(
        "/dns/records/edit", query_string={"name": "alt.", "type": "NS", "rdata": "ns1.alt."}
    )
    token = csrf_token_in(edit.get_data(as_text=True))
    fields = {"csrf_token": token, "old_name": "alt.", "old_type": "NS", "old_rdata": "ns1.alt."}
    refused = operator.post(
        "/dns/records/edit",
        data={**fields, "name": "@", "ttl": "300", "type": "A", "rdata": "192.0.2.1"},
    )
    assert refused.status_code == 400
    assert "last NS record" in unescape(refused.get_data(as_text=True))
    assert query(lab.named, "alt.", "NS") == ["ns1.alt."]
    assert query(lab.named, "alt.", "A") == []
    unreachable = operator.post(
        "/dns/records/edit",
        data={**fields, "name": "@", "ttl": "300", "type": "NS", "rdata": "ns9.alt."},
    )
    assert "ns9.alt. is inside the zone but has no A or AAAA record" in unescape(
        unreachable.get_data(as_text=True)
    )
    zone = ZoneClient.from_config(lab.settings())
    zone.add(validate_record(zone.origin, "ns9", 300, "A", "192.0.2.99"))
    wait_for_answer(lab.named, "ns9.alt.", "A", ["192.0.2.99"])
    renamed = operator.post(
        "/dns/records/edit",
        data={**fields, "name": "@", "ttl": "300", "type": "NS", "rdata": "ns9.alt."},
    )
    assert renamed.status_code == 302, unescape(renamed.get_data(as_text=True))
    assert wait_for_answer(lab.named, "alt.", "NS", ["ns9.alt."]) == ["ns9.alt."]
    zone.change(
        validate_record(zone.origin, "@", 300, "NS", "ns9.alt."),
        validate_record(zone.origin, "@", 300, "NS", "ns1.alt."),
    )
    assert wait_for_answer(lab.named, "alt.", "NS", ["ns1.alt."]) == ["ns1.alt."]


def test_records_below_a_delegation_can_be_edited_and_deleted(
    dns_app: Flask,
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
    csrf_token_in: Callable[[str], str],
) -> None:
    zone = ZoneClient.from_config(lab.settings())
    zone.add(validate_record(zone.origin, "ns.sub", 300, "A", "192.0.2.6"))  # glue first
    wait_for_answer(lab.named, "ns.sub.alt.", "A", ["192.0.2.6"])
    zone.add(validate_record(zone.origin, "sub", 300, "NS", "ns.sub.alt."))
    zone.add(validate_record(zone.origin, "x.sub", 300, "A", "192.0.2.7"))
    operator = _operator(dns_app, create_user, login)
    edit = operator.get(
        "/dns/records/edit", query_string={"name": "x.sub.alt.", "type": "A", "rdata": "192.0.2.7"}
    )
    assert edit.status_code == 200, unescape(edit.get_data(as_text=True))
    token = csrf_token_in(edit.get_data(as_text=True))
    changed = operator.post(
        "/dns/records/edit",
        data={
            "csrf_token": token,
            "old_name": "x.sub.alt.",
            "old_type": "A",
            "old_rdata": "192.0.2.7",
            "name": "x.sub",
            "ttl": "300",
            "type": "A",
            "rdata": "192.0.2.8",
        },
    )
    assert changed.status_code == 302, unescape(changed.get_data(as_text=True))
    new = validate_record(zone.origin, "x.sub", 1, "A", "192.0.2.8")
    assert [r.rdata_text for r in zone.lookup(new.name, new.rdtype)] == ["192.0.2.8"]
    deleted = operator.post(
        "/dns/records/delete",
        data={"csrf_token": token, "name": "x.sub.alt.", "type": "A", "rdata": "192.0.2.8"},
        follow_redirects=True,
    )
    assert "Deleted x.sub.alt. A 192.0.2.8" in unescape(deleted.get_data(as_text=True))
    ns = operator.post(
        "/dns/records/delete",
        data={"csrf_token": token, "name": "sub.alt.", "type": "NS", "rdata": "ns.sub.alt."},
        follow_redirects=True,
    )
    assert "Deleted sub.alt. NS ns.sub.alt." in unescape(ns.get_data(as_text=True))


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"name": "bad_name", "type": "A", "rdata": "192.0.2.9"}, "Name", "check-names"),
        ({"name": "mail", "type": "MX", "rdata": "10 alias.alt."}, "Data", "is a CNAME"),
    ],
    ids=["check-names", "mx-to-cname"],
)
def test_records_named_would_refuse_for_its_integrity_checks_are_explained(
    dns_app: Flask,
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
    csrf_token_in: Callable[[str], str],
    fields: dict[str, str],
    field: str,
    reason: str,
) -> None:
    operator = _operator(dns_app, create_user, login)
    page = operator.get("/dns/records/new").get_data(as_text=True)
    response = operator.post(
        "/dns/records/new", data={"csrf_token": csrf_token_in(page), "ttl": "300", **fields}
    )
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 400
    assert f"{field}: " in html and reason in html
    assert "TSIG key" not in html
