"""Every route needs a login, except the few that are meant to be reached without one: the login
page, the health check and static files (public), the relay endpoints (a relay token instead) and
/metrics (a scrape token or a login). The test walks app.url_map, so a new route is covered the
moment it exists."""

from __future__ import annotations

import re
from collections.abc import Callable

from altmesh_dashboard.auth.access import access_of
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

PUBLIC = {"auth.login", "core.health", "static"}
RELAY_TOKEN = {"api.register", "api.heartbeat", "api.events"}
SERVICE_TOKEN = {"api.register_service", "api.withdraw_service"}
METRICS_TOKEN = {"core.metrics"}


def _example_url(rule: Rule) -> str:
    """The rule's path with every variable filled with a value its converter accepts."""

    def fill(match: re.Match[str]) -> str:
        converter, name = match.group(1), match.group(2)
        if converter == "int":
            return "1"
        return "dashboard.css" if name == "filename" else "x1"

    return re.sub(r"<(?:([^:>]+):)?([^>]+)>", fill, rule.rule)


def test_the_exempt_endpoints_are_exactly_the_documented_ones(app: Flask) -> None:
    marks = {endpoint: access_of(view) for endpoint, view in app.view_functions.items()}
    assert {e for e, mark in marks.items() if mark == "public"} == PUBLIC - {"static"}
    assert {e for e, mark in marks.items() if mark == "relay_token"} == RELAY_TOKEN
    assert {e for e, mark in marks.items() if mark == "service_token"} == SERVICE_TOKEN
    assert {e for e, mark in marks.items() if mark == "metrics_token"} == METRICS_TOKEN


def test_every_other_route_refuses_anonymous_callers(
    app: Flask, client: FlaskClient, csrf_token_in: Callable[[str], str]
) -> None:
    # A valid CSRF token goes with every request, so the refusal seen is the login check's.
    token = csrf_token_in(client.get("/auth/login").get_data(as_text=True))
    checked = 0
    for rule in app.url_map.iter_rules():
        url = _example_url(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method, headers={"X-CSRFToken": token})
            where = f"{method} {url} ({rule.endpoint})"
            if rule.endpoint in PUBLIC:
                assert response.status_code in (200, 400), where  # 400: login form incomplete
            elif rule.endpoint in RELAY_TOKEN | SERVICE_TOKEN:
                assert response.status_code == 401, where
                assert "token" in response.get_json()["error"], where
            elif rule.endpoint in METRICS_TOKEN or url.startswith("/api/"):
                assert response.status_code == 401, where
            else:
                assert response.status_code == 302, where
                assert response.headers["Location"].startswith("/auth/login"), where
            checked += 1
    assert checked >= 15  # the walk really covered the app


def test_a_forgotten_decorator_is_still_guarded(app: Flask) -> None:
    """A view added without any decorator must still need a login (the app-wide guard)."""

    @app.get("/undecorated")
    def undecorated() -> str:
        return "secret"

    response = app.test_client().get("/undecorated")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")
