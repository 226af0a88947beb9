"""The application factory, health, and the fixtures other tests build on."""

from __future__ import annotations

from collections.abc import Callable

import requests
from altmesh_dashboard import create_app
from flask import Flask
from flask.testing import FlaskClient


def test_create_app_is_exported_and_registers_every_area(app: Flask) -> None:
    assert create_app is not None
    assert {"auth", "relays", "events", "api", "audit", "dns", "core"} <= set(app.blueprints)


def test_health_answers_without_login(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_logged_in_admin_sees_the_relay_overview(admin_client: FlaskClient) -> None:
    response = admin_client.get("/relays/")
    assert response.status_code == 200
    assert "No relay has registered yet" in response.get_data(as_text=True)


def test_live_server_serves_health_over_loopback(live_server_factory: Callable) -> None:
    server = live_server_factory(workers=1)
    assert server.url.startswith("http://127.0.0.1:")
    assert requests.get(server.url + "/health", timeout=5).json()["status"] == "ok"
