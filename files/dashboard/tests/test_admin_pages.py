"""Admin pages: users (create, change role, disable) and relay tokens (create shown once,
revoke), each change audited; other roles are refused."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import ApiToken, AuditEntry, User
from altmesh_dashboard.tokens import hash_token
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select


def _audit(app: Flask, action: str) -> AuditEntry:
    with app.app_context():
        entry = get_session().scalar(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id.desc())
        )
    assert entry is not None, action
    return entry


def test_admin_creates_a_user_who_can_log_in(
    app: Flask, admin_client: FlaskClient, csrf_token_in: Callable, login: Callable
) -> None:
    page = admin_client.get("/auth/users").get_data(as_text=True)
    response = admin_client.post(
        "/auth/users",
        data={
            "csrf_token": csrf_token_in(page),
            "username": "carol",
            "password": "carol-password-1",
            "role": "operator",
        },
    )
    assert response.status_code == 302
    assert "User carol created with role operator" in admin_client.get("/auth/users").get_data(
        as_text=True
    )
    assert _audit(app, "user.create").after == {
        "username": "carol",
        "role": "operator",
        "disabled": False,
    }
    from conftest import Credentials

    login(app.test_client(), Credentials("carol", "carol-password-1", "operator"))


def test_user_form_errors_name_the_problem(
    admin_client: FlaskClient, csrf_token_in: Callable
) -> None:
    page = admin_client.get("/auth/users").get_data(as_text=True)
    response = admin_client.post(
        "/auth/users",
        data={
            "csrf_token": csrf_token_in(page),
            "username": "dave",
            "password": "short",
            "role": "viewer",
        },
    )
    assert response.status_code == 400
    assert "password must be at least 12 characters" in response.get_data(as_text=True)


def test_admin_changes_role_and_disables_a_user(
    app: Flask,
    admin_client: FlaskClient,
    create_user: Callable,
    csrf_token_in: Callable,
    login: Callable,
) -> None:
    victim = create_user("viewer")
    victim_client = app.test_client()
    login(victim_client, victim)
    with app.app_context():
        user_id = get_session().scalar(select(User.id).where(User.username == victim.username))
    page = admin_client.get("/auth/users").get_data(as_text=True)
    response = admin_client.post(
        f"/auth/users/{user_id}",
        data={
            "csrf_token": csrf_token_in(page),
            f"u{user_id}-role": "operator",
            f"u{user_id}-disabled": "y",
        },
    )
    assert response.status_code == 302
    entry = _audit(app, "user.change")
    assert entry.before == {"username": victim.username, "role": "viewer", "disabled": False}
    assert entry.after == {"username": victim.username, "role": "operator", "disabled": True}
    assert victim_client.get("/relays/").status_code == 302  # the disabled user is logged out


def test_admin_cannot_demote_themselves(
    app: Flask, create_user: Callable, csrf_token_in: Callable, login: Callable
) -> None:
    admin = create_user("admin")
    client = app.test_client()
    login(client, admin)
    with app.app_context():
        admin_id = get_session().scalar(select(User.id).where(User.username == admin.username))
    page = client.get("/auth/users").get_data(as_text=True)
    response = client.post(
        f"/auth/users/{admin_id}",
        data={"csrf_token": csrf_token_in(page), f"u{admin_id}-role": "viewer"},
    )
    assert response.status_code == 400
    assert "cannot demote or disable yourself" in response.get_data(as_text=True)


def test_operators_and_viewers_cannot_reach_admin_pages(
    operator_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    for client in (operator_client, viewer_client):
        assert client.get("/auth/users").status_code == 403
        assert client.get("/relays/tokens").status_code == 403


def test_a_token_made_in_the_browser_is_shown_once_works_and_can_be_revoked(
    app: Flask, admin_client: FlaskClient, client: FlaskClient, csrf_token_in: Callable
) -> None:
    page = admin_client.get("/relays/tokens").get_data(as_text=True)
    created = admin_client.post(
        "/relays/tokens",
        data={"csrf_token": csrf_token_in(page), "kind": "relay", "name": "relay-9"},
    )
    html = created.get_data(as_text=True)
    token = re.search(r"<code>(amr_[^<]+)</code>", html)
    assert token is not None
    assert created.headers["Cache-Control"] == "no-store"
    assert token.group(1) not in admin_client.get("/relays/tokens").get_data(as_text=True)
    assert _audit(app, "token.create").after["relay_name"] == "relay-9"
    with app.app_context():
        row = get_session().scalar(
            select(ApiToken).where(ApiToken.token_hash == hash_token(token.group(1)))
        )
        assert row is not None
        token_id = row.id
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    assert client.post("/api/v1/relays/heartbeat", json={}, headers=auth).status_code != 401
    page = admin_client.get("/relays/tokens").get_data(as_text=True)
    revoked = admin_client.post(
        f"/relays/tokens/{token_id}/revoke", data={"csrf_token": csrf_token_in(page)}
    )
    assert revoked.status_code == 302
    assert _audit(app, "token.revoke").after["revoked"] is True
    assert client.post("/api/v1/relays/heartbeat", json={}, headers=auth).status_code == 401


def test_token_form_rejects_a_bad_relay_name(
    admin_client: FlaskClient, csrf_token_in: Callable
) -> None:
    page = admin_client.get("/relays/tokens").get_data(as_text=True)
    response = admin_client.post(
        "/relays/tokens",
        data={"csrf_token": csrf_token_in(page), "kind": "relay", "name": "Not A Label"},
    )
    assert response.status_code == 400
    assert "must be one DNS label" in response.get_data(as_text=True)
    assert "amr_" not in response.get_data(as_text=True)


def test_a_service_token_made_on_the_tokens_page_is_scoped_to_its_name_and_audited(
    app: Flask, admin_client: FlaskClient, csrf_token_in: Callable
) -> None:
    page = admin_client.get("/relays/tokens").get_data(as_text=True)
    created = admin_client.post(
        "/relays/tokens",
        data={"csrf_token": csrf_token_in(page), "kind": "service", "name": "Web.alt"},
    )
    assert created.status_code == 200
    html = created.get_data(as_text=True)
    token = re.search(r"<code>(ams_[^<]+)</code>", html)
    assert token is not None
    assert "Token for service <strong>web.alt.</strong>" in html
    with app.app_context():
        row = get_session().scalar(
            select(ApiToken).where(ApiToken.token_hash == hash_token(token.group(1)))
        )
        assert row is not None
        assert (row.kind, row.service_name, row.relay_name) == ("service", "web.alt.", None)
    entry = _audit(app, "token.create")
    assert entry.target == "service:web.alt."
    assert entry.after == {
        "id": row.id,
        "kind": "service",
        "service_name": "web.alt.",
        "revoked": False,
    }


@pytest.mark.parametrize(
    ("kind", "name", "problem"),
    [
        ("service", "web.example", "must be a name inside the zone alt."),
        ("service", "alt.", "must be a name inside the zone alt."),
        ("service", "we b.alt", "must be dot-separated labels"),
        ("printer", "relay-1", "Not a valid choice"),
    ],
)
def test_the_tokens_page_refuses_a_bad_kind_or_name_and_makes_no_token(
    app: Flask,
    admin_client: FlaskClient,
    csrf_token_in: Callable,
    kind: str,
    name: str,
    problem: str,
) -> None:
    page = admin_client.get("/relays/tokens").get_data(as_text=True)
    response = admin_client.post(
        "/relays/tokens", data={"csrf_token": csrf_token_in(page), "kind": kind, "name": name}
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert problem in html
    assert "ams_" not in html and "amr_" not in html
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(ApiToken)) == 0


def test_tokens_cli_creates_lists_and_revokes(app: Flask) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=["tokens", "create", "relay-5"])
    assert created.exit_code == 0
    assert created.stdout.strip().startswith("amr_")
    assert "shown once" in created.stderr
    listed = runner.invoke(args=["tokens", "list"])
    assert "relay-5\tactive" in listed.output
    assert created.stdout.strip() not in listed.output
    assert runner.invoke(args=["tokens", "revoke", "1"]).exit_code == 0
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output
    missing = runner.invoke(args=["tokens", "revoke", "99"])
    assert missing.exit_code != 0 and "no token with id 99" in missing.output
    bad = runner.invoke(args=["tokens", "create", "Bad Name"])
    assert bad.exit_code != 0 and "relay: must be one DNS label" in bad.output


def test_reserved_relay_names_are_refused(app: Flask) -> None:
    bad = app.test_cli_runner().invoke(args=["tokens", "create", "mesh"])
    assert bad.exit_code != 0 and "reserved" in bad.output
