"""Relays in DNS: registering through the API publishes a relay's address, key and DNS-SD
records in the signed zone; heartbeats move its SRV weight with its load, and only when the
weight bucket changes."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import pytest
from altmesh_dashboard.db import get_session
from altmesh_dashboard.dns.publish import (
    WEIGHT_RECHECK_SECONDS,
    published_srv_weights,
    unpublish_relay,
    update_relay_weight,
    weight_for_load,
)
from altmesh_dashboard.dns.zone import ZoneClient
from altmesh_dashboard.models import AuditEntry, Relay, utcnow
from dns_support import (
    NETWORK_PREFIX,
    DnsLab,
    closed_port,
    dns_lab,
    query,
    update_serial,
    wait_for_answer,
)
from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from sqlalchemy import select

PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(100, 132))).decode()
ZONE = dns.name.from_text("alt.")


# ------------------------------------------------------------------ weight (pure)


@pytest.mark.parametrize(
    ("load", "weight"),
    [
        (0.0, 100),
        (0.04, 100),
        (0.05, 100),  # half up: 9.5 -> 10
        (0.06, 90),
        (0.25, 80),  # 7.5 -> 8
        (0.5, 50),
        (0.9, 10),
        (0.96, 1),  # an almost full relay keeps weight 1, never 0 ("almost never")
        (1.0, 1),
        (-0.5, 100),  # out-of-range loads are clamped
        (7.0, 1),
        (None, 50),  # no heartbeat yet
        (float("nan"), 50),
    ],
)
def test_weight_for_load(load: float | None, weight: int) -> None:
    assert weight_for_load(load) == weight


def test_weight_never_grows_with_load_and_stays_in_srv_range() -> None:
    weights = [weight_for_load(step / 1000) for step in range(1001)]
    assert all(later <= earlier for earlier, later in itertools.pairwise(weights))
    assert all(1 <= weight <= 100 for weight in weights)
    assert len(set(weights)) == 11  # buckets, so jitter in load does not mean DNS traffic


# ----------------------------------------------------------- against real named


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DnsLab]:
    with dns_lab(tmp_path / "named") as running:
        yield running


@pytest.fixture
def dns_app(make_app: Callable[..., Flask], lab: DnsLab) -> Flask:
    return make_app(**lab.settings())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _register(
    client: FlaskClient, token: str, name: str, endpoints: list[dict[str, Any]], key: str
) -> dict[str, Any]:
    body = {"name": name, "public_key": key, "address": address_of(key), "endpoints": endpoints}
    response = client.post("/api/v1/relays/register", json=body, headers=_bearer(token))
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def _heartbeat(client: FlaskClient, token: str, load: float) -> None:
    body = {
        "load": load,
        "active_streams": 1,
        "bytes_in": 10,
        "bytes_out": 20,
        "version": "0.1.0",
        "links": [],
    }
    response = client.post("/api/v1/relays/heartbeat", json=body, headers=_bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)


def _validated(lab: DnsLab, name: str, rdtype: str) -> list[str]:
    """The RRset as named serves it, after checking its signature chain to the trust anchor."""
    named = lab.named
    keys_answer = dns.query.tcp(
        dns.message.make_query(ZONE, "DNSKEY", want_dnssec=True), named.address, port=named.port
    )
    keys = keys_answer.find_rrset(keys_answer.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    key_sigs = keys_answer.find_rrset(
        keys_answer.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY
    )
    dns.dnssec.validate(keys, key_sigs, {ZONE: named.trust_anchor_rrset()})
    owner = dns.name.from_text(name)
    kind = dns.rdatatype.from_text(rdtype)
    answer = dns.query.tcp(
        dns.message.make_query(owner, kind, want_dnssec=True), named.address, port=named.port
    )
    rrset = answer.find_rrset(answer.answer, owner, dns.rdataclass.IN, kind)
    sigs = answer.find_rrset(answer.answer, owner, dns.rdataclass.IN, dns.rdatatype.RRSIG, kind)
    dns.dnssec.validate(rrset, sigs, {ZONE: keys})
    return sorted(rdata.to_text() for rdata in rrset)


def test_registration_publishes_address_key_and_dns_sd_records(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    client = dns_app.test_client()
    endpoints = [{"host": "192.0.2.10", "port": 7000}, {"host": "relay1.example.net", "port": 7001}]
    result = _register(client, relay_token("relay-1"), "relay-1", endpoints, PUBLIC_KEY)
    assert result["dns"] == "published"
    named = lab.named

    address = address_of(PUBLIC_KEY)
    assert wait_for_answer(named, "relay-1.alt.", "AAAA", [address]) == [address]
    assert _validated(lab, "relay-1.alt.", "AAAA") == [address]
    assert _validated(lab, "relay-1.alt.", "TXT") == [f'"altmesh-key={PUBLIC_KEY}"']
    srv = ["0 50 7000 ep0.relay-1.alt.", "0 50 7001 relay1.example.net."]
    assert _validated(lab, "_altmesh._tcp.alt.", "SRV") == srv
    assert query(named, "_altmesh._tcp.alt.", "PTR") == ["relay-1._altmesh._tcp.alt."]
    assert query(named, "relay-1._altmesh._tcp.alt.", "SRV") == srv
    assert query(named, "relay-1._altmesh._tcp.alt.", "TXT") == [
        f'"txtvers=1" "relay=relay-1" "altmesh-key={PUBLIC_KEY}"'
    ]
    assert query(named, "ep0.relay-1.alt.", "A") == ["192.0.2.10"]

    with dns_app.app_context():
        entries = get_session().scalars(
            select(AuditEntry).where(AuditEntry.action == "dns.publish_relay")
        )
        [entry] = list(entries)
    assert entry.actor == "relay:relay-1"
    assert entry.after is not None
    assert f"relay-1.alt. AAAA {address}" in entry.after["records"]


def test_heartbeat_with_a_different_load_changes_the_srv_weight_and_jitter_does_not(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    client = dns_app.test_client()
    token = relay_token("relay-1")
    _register(client, token, "relay-1", [{"host": "192.0.2.10", "port": 7000}], PUBLIC_KEY)
    named = lab.named
    wait_for_answer(named, "_altmesh._tcp.alt.", "SRV", ["0 50 7000 ep0.relay-1.alt."])

    _heartbeat(client, token, 0.9)
    expected = ["0 10 7000 ep0.relay-1.alt."]
    assert wait_for_answer(named, "_altmesh._tcp.alt.", "SRV", expected) == expected
    assert wait_for_answer(named, "relay-1._altmesh._tcp.alt.", "SRV", expected) == expected

    serial = update_serial(named)
    _heartbeat(client, token, 0.91)  # same weight bucket: nothing may be sent
    _heartbeat(client, token, 0.88)
    assert update_serial(named) == serial
    assert query(named, "_altmesh._tcp.alt.", "SRV") == expected

    _heartbeat(client, token, 0.1)
    expected = ["0 90 7000 ep0.relay-1.alt."]
    assert wait_for_answer(named, "_altmesh._tcp.alt.", "SRV", expected) == expected


def test_update_relay_weight_sends_only_when_the_weight_changes(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    client = dns_app.test_client()
    _register(
        client,
        relay_token("relay-1"),
        "relay-1",
        [{"host": "192.0.2.10", "port": 7000}],
        PUBLIC_KEY,
    )
    zone = ZoneClient.from_config(lab.settings())
    with dns_app.app_context():
        relay = get_session().scalars(select(Relay).where(Relay.name == "relay-1")).one()
        assert update_relay_weight(relay, zone, weight=50) is False  # registered with 50
        assert update_relay_weight(relay, zone, weight=weight_for_load(0.3)) is True
        assert update_relay_weight(relay, zone, weight=weight_for_load(0.31)) is False
    wait_for_answer(lab.named, "relay-1._altmesh._tcp.alt.", "SRV", ["0 70 7000 ep0.relay-1.alt."])
    assert published_srv_weights(zone, "relay-1") == [70]


def _stored_weight(app: Flask, relay_name: str) -> int | None:
    with app.app_context():
        relay = get_session().scalars(select(Relay).where(Relay.name == relay_name)).one()
        return relay.published_weight


def test_the_published_weight_is_kept_in_the_database_for_every_worker(
    dns_app: Flask,
    make_app: Callable[..., Flask],
    lab: DnsLab,
    relay_token: Callable[[str], str],
) -> None:
    """Two app instances on one database stand for two gunicorn workers (or the app before and
    after a restart): what one published, the other knows without asking the server."""
    token = relay_token("relay-1")
    first_worker = dns_app.test_client()
    _register(first_worker, token, "relay-1", [{"host": "192.0.2.10", "port": 7000}], PUBLIC_KEY)
    assert _stored_weight(dns_app, "relay-1") == 50
    _heartbeat(first_worker, token, 0.9)
    assert _stored_weight(dns_app, "relay-1") == 10
    expected = ["0 10 7000 ep0.relay-1.alt."]
    assert wait_for_answer(lab.named, "relay-1._altmesh._tcp.alt.", "SRV", expected) == expected

    other_worker_app = make_app(**lab.settings())
    serial = update_serial(lab.named)
    _heartbeat(other_worker_app.test_client(), token, 0.92)  # same bucket: nothing to send
    assert update_serial(lab.named) == serial
    _heartbeat(other_worker_app.test_client(), token, 0.5)
    assert _stored_weight(dns_app, "relay-1") == 50
    expected = ["0 50 7000 ep0.relay-1.alt."]
    assert wait_for_answer(lab.named, "relay-1._altmesh._tcp.alt.", "SRV", expected) == expected


def test_an_old_stored_weight_is_checked_against_the_server(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    """A weight recorded long ago (someone may have edited the zone by hand since) is not
    trusted: the server's SRV records are read and corrected."""
    client = dns_app.test_client()
    _register(
        client,
        relay_token("relay-1"),
        "relay-1",
        [{"host": "192.0.2.10", "port": 7000}],
        PUBLIC_KEY,
    )
    zone = ZoneClient.from_config(lab.settings())
    with dns_app.app_context():
        relay = get_session().scalars(select(Relay).where(Relay.name == "relay-1")).one()
        relay.published_weight = 70  # wrong: the zone has 50
        relay.weight_published_at = utcnow() - dt.timedelta(seconds=WEIGHT_RECHECK_SECONDS - 60)
        get_session().commit()
        assert update_relay_weight(relay, zone, weight=70) is False  # recent enough: trusted
        relay.weight_published_at = utcnow() - dt.timedelta(seconds=WEIGHT_RECHECK_SECONDS + 1)
        get_session().commit()
        assert update_relay_weight(relay, zone, weight=70) is True
        assert relay.published_weight == 70
    expected = ["0 70 7000 ep0.relay-1.alt."]
    assert wait_for_answer(lab.named, "relay-1._altmesh._tcp.alt.", "SRV", expected) == expected


def test_reregistration_replaces_a_relays_old_endpoints_and_keeps_other_relays(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    client = dns_app.test_client()
    token_one, token_two = relay_token("relay-1"), relay_token("relay-2")
    _register(client, token_one, "relay-1", [{"host": "192.0.2.10", "port": 7000}], PUBLIC_KEY)
    _register(client, token_two, "relay-2", [{"host": "2001:db8::2", "port": 7000}], OTHER_KEY)
    _register(
        client, token_one, "relay-1", [{"host": "relay1.example.net", "port": 7100}], PUBLIC_KEY
    )
    expected = ["0 50 7000 ep0.relay-2.alt.", "0 50 7100 relay1.example.net."]
    assert wait_for_answer(lab.named, "_altmesh._tcp.alt.", "SRV", expected) == expected
    assert query(lab.named, "_altmesh._tcp.alt.", "PTR") == [
        "relay-1._altmesh._tcp.alt.",
        "relay-2._altmesh._tcp.alt.",
    ]
    assert query(lab.named, "ep0.relay-1.alt.", "A") == []  # the old IP endpoint's name is gone
    assert query(lab.named, "ep0.relay-2.alt.", "AAAA") == ["2001:db8::2"]
    assert query(lab.named, "relay-2.alt.", "TXT") == [f'"altmesh-key={OTHER_KEY}"']


def test_registration_succeeds_and_reports_it_when_dns_is_down(
    make_app: Callable[..., Flask], lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    token = relay_token("relay-1")
    with closed_port() as port:
        app = make_app(**lab.settings(DNS_PORT=port))
        endpoints = [{"host": "192.0.2.10", "port": 7000}]
        result = _register(app.test_client(), token, "relay-1", endpoints, PUBLIC_KEY)
    assert result["dns"].startswith("failed: ")
    assert "refused the connection" in result["dns"]


def test_unpublish_removes_only_that_relays_records(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    client = dns_app.test_client()
    _register(
        client,
        relay_token("relay-1"),
        "relay-1",
        [{"host": "192.0.2.10", "port": 7000}],
        PUBLIC_KEY,
    )
    _register(
        client, relay_token("relay-2"), "relay-2", [{"host": "192.0.2.20", "port": 7000}], OTHER_KEY
    )
    zone = ZoneClient.from_config(lab.settings())
    with dns_app.app_context():
        relay = get_session().scalars(select(Relay).where(Relay.name == "relay-1")).one()
        unpublish_relay(relay, zone)
    expected = ["0 50 7000 ep0.relay-2.alt."]
    assert wait_for_answer(lab.named, "_altmesh._tcp.alt.", "SRV", expected) == expected
    assert query(lab.named, "_altmesh._tcp.alt.", "PTR") == ["relay-2._altmesh._tcp.alt."]
    for name, rdtype in [
        ("relay-1.alt.", "AAAA"),
        ("relay-1.alt.", "TXT"),
        ("relay-1._altmesh._tcp.alt.", "SRV"),
        ("relay-1._altmesh._tcp.alt.", "TXT"),
        ("ep0.relay-1.alt.", "A"),
    ]:
        assert query(lab.named, name, rdtype) == [], (name, rdtype)
    assert query(lab.named, "relay-2.alt.", "AAAA") == [address_of(OTHER_KEY)]


def test_the_altmesh_client_resolves_a_published_relay_with_dnssec(
    dns_app: Flask, lab: DnsLab, relay_token: Callable[[str], str]
) -> None:
    """What the dashboard publishes is what `altmesh` clients consume: the client's validating
    resolver, pinned to the zone's trust anchor, gets the relay's address and key."""
    import asyncio
    import ipaddress

    from altmesh.client.dnssec import AltResolver, parse_trust_anchors
    from altmesh.config import HostPort
    from altmesh.protocol.address import node_address

    prefix = ipaddress.IPv6Network(NETWORK_PREFIX)
    public_key = bytes(range(32))
    address = node_address(prefix, public_key)
    body = {
        "name": "relay-1",
        "public_key": base64.b64encode(public_key).decode(),
        "address": str(address),
        "endpoints": [{"host": "192.0.2.10", "port": 7000}],
    }
    response = dns_app.test_client().post(
        "/api/v1/relays/register", json=body, headers=_bearer(relay_token("relay-1"))
    )
    assert response.get_json()["dns"] == "published"
    wait_for_answer(lab.named, "relay-1.alt.", "AAAA", [str(address)])

    resolver = AltResolver(
        [HostPort(lab.named.address, lab.named.port)],
        parse_trust_anchors([lab.named.trust_anchor]),
        prefix,
    )
    resolved = asyncio.run(resolver.resolve("relay-1.alt"))
    assert resolved.address == address
    assert resolved.public_key == public_key
