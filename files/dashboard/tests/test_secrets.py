"""Relay tokens, passwords and password hashes never appear in responses or logs."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import pytest
import requests
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import ApiToken, User
from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from sqlalchemy import select

PASSWORD = "admin-password-for-leak-test"
REGISTRATION = {
    "name": "relay-1",
    "public_key": base64.b64encode(bytes(32)).decode(),
    "address": address_of(base64.b64encode(bytes(32)).decode()),
    "endpoints": [{"host": "192.0.2.1", "port": 7000}],
}
HEARTBEAT = {"load": 0.5, "active_streams": 1, "bytes_in": 1, "bytes_out": 1, "version": "1"}
PAGES = [
    "/relays/",
    "/relays/relay-1",
    "/relays/mesh",
    "/relays/mesh.svg",
    "/events/",
    "/audit/",
    "/api/v1/relays",
    "/api/v1/openapi.json",
    "/metrics",
    "/health",
]


def test_secrets_stay_out_of_responses_and_logs(
    app: Flask, caplog: pytest.LogCaptureFixture, csrf_token_in: Callable[[str], str]
) -> None:
    caplog.set_level(logging.DEBUG)
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=["users", "create", "boss", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert created.exit_code == 0
    issued = runner.invoke(args=["tokens", "create", "relay-1"])
    assert issued.exit_code == 0
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("amr_")
    with app.app_context():
        password_hash = get_session().scalar(select(User.password_hash))
        token_hash = get_session().scalar(select(ApiToken.token_hash))
    assert password_hash and token_hash
    secrets = {
        "token": token,
        "password": PASSWORD,
        "password hash": password_hash,
        "token hash": token_hash,
    }

    bodies: list[str] = []
    relay = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    for path, body in [
        ("register", REGISTRATION),
        ("heartbeat", HEARTBEAT),
        ("heartbeat", {"load": "bad"}),
    ]:
        response = relay.post(f"/api/v1/relays/{path}", json=body, headers=auth)
        bodies.append(response.get_data(as_text=True) + str(response.headers))
    person: FlaskClient = app.test_client()
    for password in ("wrong-password-1", PASSWORD):
        form = csrf_token_in(person.get("/auth/login").get_data(as_text=True))
        response = person.post(
            "/auth/login", data={"username": "boss", "password": password, "csrf_token": form}
        )
        bodies.append(response.get_data(as_text=True) + str(response.headers))
    for page in PAGES:
        response = person.get(page)
        assert response.status_code == 200, page
        bodies.append(response.get_data(as_text=True) + str(response.headers))
    runner.invoke(args=["tokens", "list"])
    revoked = runner.invoke(args=["tokens", "revoke", "1"])
    assert revoked.exit_code == 0
    refused = relay.post("/api/v1/relays/heartbeat", json=HEARTBEAT, headers=auth)
    assert refused.status_code == 401
    bodies.append(refused.get_data(as_text=True))
    bodies.append(person.get("/audit/").get_data(as_text=True))

    logs = caplog.text
    assert "logged in" in logs and "refused" in logs  # the logs did capture these requests
    for name, secret in secrets.items():
        for body in bodies:
            assert secret not in body, f"{name} appears in a response"
        assert secret not in logs, f"{name} appears in the logs"


def test_gunicorn_logs_hold_no_token_or_password(
    live_server_factory: Callable, relay_token: Callable[[str], str], create_user: Callable
) -> None:
    server = live_server_factory(workers=1, LOG_LEVEL="DEBUG")
    token = relay_token("relay-1")
    user = create_user("admin")
    auth = {"Authorization": f"Bearer {token}"}
    assert (
        requests.post(
            server.url + "/api/v1/relays/register", json=REGISTRATION, headers=auth, timeout=10
        ).status_code
        == 201
    )
    assert (
        requests.post(
            server.url + "/api/v1/relays/heartbeat", json=HEARTBEAT, headers=auth, timeout=10
        ).status_code
        == 200
    )
    session = requests.Session()
    login_page = session.get(server.url + "/auth/login", timeout=10).text
    import re

    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login_page)
    assert csrf is not None
    for password in ("wrong-password-2", user.password):
        session.post(
            server.url + "/auth/login",
            timeout=10,
            data={"username": user.username, "password": password, "csrf_token": csrf.group(1)},
        )
    assert session.get(server.url + "/relays/", timeout=10).status_code == 200
    log = server.log_text()
    assert "POST /api/v1/relays/heartbeat" in log  # the access log is on
    assert "failed login" in log
    assert token not in log
    assert user.password not in log and "wrong-password-2" not in log
