"""The application factory, health, and the fixtures other tests build on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
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


def test_health_reports_an_unreachable_database_as_503(make_app: Callable, tmp_path: Path) -> None:
    app = make_app(
        DATABASE_URL=f"sqlite:///{tmp_path / 'no-such-dir' / 'db.sqlite3'}", AUTO_MIGRATE=False
    )
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unhealthy", "database": "unreachable"}


def test_an_unexpected_error_is_a_plain_500_page_without_a_traceback(
    make_app: Callable,
    create_user: Callable,
    login: Callable,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("internal detail")

    @app.get("/api/v1/boom")
    def api_boom() -> str:
        raise RuntimeError("internal detail")

    admin_client = app.test_client()
    login(admin_client, create_user("admin"))
    page = admin_client.get("/boom")
    assert page.status_code == 500
    assert "Internal error; the server log has the details." in page.get_data(as_text=True)
    assert "internal detail" not in page.get_data(as_text=True)
    assert "Traceback" not in page.get_data(as_text=True)
    api = admin_client.get("/api/v1/boom")
    assert api.status_code == 500
    assert api.get_json() == {"error": "Internal error; the server log has the details."}
    assert "internal detail" in caplog.text  # the operator still finds it in the log


def test_pages_carry_a_strict_content_security_policy(client: FlaskClient) -> None:
    response = client.get("/auth/login")
    assert "script-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
