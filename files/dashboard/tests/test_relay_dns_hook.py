"""Registration and heartbeats reach the DNS publisher only when DNS is configured, and a DNS
server that does not answer never fails the relay's request."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from prometheus_client import REGISTRY

REGISTRATION = {
    "name": "relay-1",
    "public_key": base64.b64encode(bytes(32)).decode(),
    "address": address_of(base64.b64encode(bytes(32)).decode()),
    "endpoints": [{"host": "192.0.2.1", "port": 7000}],
}


def _silent_udp_port() -> tuple[socket.socket, int]:
    """A bound UDP socket nobody reads: queries to it time out (a DNS server that is down)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_without_dns_settings_registration_does_not_touch_dns(
    client: FlaskClient, relay_token: Callable[[str], str]
) -> None:
    response = client.post(
        "/api/v1/relays/register",
        json=REGISTRATION,
        headers={"Authorization": f"Bearer {relay_token('relay-1')}"},
    )
    assert response.status_code == 201
    assert response.get_json()["dns"] == "not configured"


def test_an_unreachable_dns_server_does_not_fail_registration(
    make_app: Callable[..., Flask], relay_token: Callable[[str], str]
) -> None:
    sock, port = _silent_udp_port()
    try:
        app = make_app(
            DNS_SERVER="127.0.0.1",
            DNS_PORT=port,
            DNS_TSIG_KEY_NAME="dashboard",
            DNS_TSIG_SECRET=base64.b64encode(b"0" * 32).decode(),
            DNS_TIMEOUT=0.2,
        )
        before = (
            REGISTRY.get_sample_value("altmesh_dashboard_failures_total", {"kind": "dns_publish"})
            or 0.0
        )
        response = app.test_client().post(
            "/api/v1/relays/register",
            json=REGISTRATION,
            headers={"Authorization": f"Bearer {relay_token('relay-1')}"},
        )
    finally:
        sock.close()
    assert response.status_code == 201
    assert response.get_json()["dns"].startswith("failed: ")
    after = REGISTRY.get_sample_value("altmesh_dashboard_failures_total", {"kind": "dns_publish"})
    assert after == before + 1


def test_forgetting_a_relay_survives_an_unreachable_dns_server(
    make_app: Callable[..., Flask],
    create_user: Callable,
    login: Callable,
    csrf_token_in: Callable[[str], str],
    relay_token: Callable[[str], str],
) -> None:
    sock, port = _silent_udp_port()
    try:
        app = make_app(
            DNS_SERVER="127.0.0.1",
            DNS_PORT=port,
            DNS_TSIG_KEY_NAME="dashboard",
            DNS_TSIG_SECRET=base64.b64encode(b"0" * 32).decode(),
            DNS_TIMEOUT=0.2,
        )
        app.test_client().post(
            "/api/v1/relays/register",
            json=REGISTRATION,
            headers={"Authorization": f"Bearer {relay_token('relay-1')}"},
        )
        operator: FlaskClient = app.test_client()
        login(operator, create_user("operator"))
        token = csrf_token_in(operator.get("/relays/relay-1").get_data(as_text=True))
        response = operator.post(
            "/relays/relay-1/forget", data={"csrf_token": token}, follow_redirects=True
        )
    finally:
        sock.close()
    html = response.get_data(as_text=True)
    assert "Relay relay-1 forgotten." in html
    assert "Its DNS records could not be removed (failed: " in html
    assert 'data-relay="relay-1"' not in html
