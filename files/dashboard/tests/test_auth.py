"""Users, roles, login, sessions, CSRF and login throttling."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import AuditEntry, LoginFailure, LoginSession, User
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select


def _post_login(
    client: FlaskClient,
    csrf_token_in: Callable[[str], str],
    username: str,
    password: str,
    next_url: str = "",
) -> object:
    token = csrf_token_in(client.get("/auth/login").get_data(as_text=True))
    path = "/auth/login" + (f"?next={next_url}" if next_url else "")
    return client.post(path, data={"username": username, "password": password, "csrf_token": token})


def test_login_with_the_right_password_opens_a_session(
    client: FlaskClient, create_user: Callable, csrf_token_in: Callable
) -> None:
    user = create_user("viewer")
    response = _post_login(client, csrf_token_in, user.username, user.password)
    assert response.status_code == 302
    assert response.headers["Location"] == "/relays/"
    assert client.get("/relays/").status_code == 200


def test_login_with_a_wrong_password_is_refused(
    client: FlaskClient, create_user: Callable, csrf_token_in: Callable
) -> None:
    user = create_user("viewer")
    response = _post_login(client, csrf_token_in, user.username, "wrong-password")
    assert response.status_code == 401
    assert "Wrong username or password" in response.get_data(as_text=True)
    assert client.get("/relays/").status_code == 302


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(
    client: FlaskClient, csrf_token_in: Callable
) -> None:
    response = _post_login(client, csrf_token_in, "nobody", "whatever-password")
    assert response.status_code == 401
    assert "Wrong username or password" in response.get_data(as_text=True)


def test_login_redirects_only_to_local_paths(
    client: FlaskClient, create_user: Callable, csrf_token_in: Callable
) -> None:
    user = create_user("viewer")
    response = _post_login(
        client, csrf_token_in, user.username, user.password, next_url="//evil.example/x"
    )
    assert response.headers["Location"] == "/relays/"
    response = _post_login(
        client, csrf_token_in, user.username, user.password, next_url="/%5Cevil.example"
    )
    assert response.headers["Location"] == "/relays/"
    client.post(
        "/auth/logout",
        headers={"X-CSRFToken": csrf_token_in(client.get("/relays/").get_data(as_text=True))},
    )
    response = _post_login(client, csrf_token_in, user.username, user.password, next_url="/events/")
    assert response.headers["Location"] == "/events/"


def _copy_session_cookie(source: FlaskClient, target: FlaskClient) -> str:
    """What a thief does with a captured cookie: present it from another client."""
    name = source.application.config["SESSION_COOKIE_NAME"]
    cookie = source.get_cookie(name)
    assert cookie is not None
    target.set_cookie(name, cookie.value)
    return cookie.value


def test_a_session_cookie_captured_before_logout_is_refused_after_it(
    app: Flask, create_user: Callable, csrf_token_in: Callable
) -> None:
    victim = app.test_client()
    user = create_user("admin")
    assert _post_login(victim, csrf_token_in, user.username, user.password).status_code == 302
    thief = app.test_client()
    _copy_session_cookie(victim, thief)
    assert thief.get("/relays/").status_code == 200  # the copy works while the login lasts

    token = csrf_token_in(victim.get("/relays/").get_data(as_text=True))
    assert victim.post("/auth/logout", data={"csrf_token": token}).status_code == 302
    response = thief.get("/relays/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")
    assert thief.get("/auth/users").status_code == 302  # nor the admin pages
    with app.app_context():
        assert get_session().scalars(select(LoginSession)).all() == []


def test_logout_ends_only_that_session_and_ids_are_stored_hashed(
    app: Flask, create_user: Callable, csrf_token_in: Callable
) -> None:
    user = create_user("viewer")
    laptop, phone = app.test_client(), app.test_client()
    for client in (laptop, phone):
        assert _post_login(client, csrf_token_in, user.username, user.password).status_code == 302
    with app.app_context():
        stored = {row.id_hash for row in get_session().scalars(select(LoginSession))}
    assert len(stored) == 2
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    laptop_cookie = laptop.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert laptop_cookie is not None
    session_id = serializer.loads(laptop_cookie.value)["sid"]
    assert session_id not in stored  # only its SHA-256 is kept
    assert hashlib.sha256(session_id.encode()).hexdigest() in stored

    token = csrf_token_in(laptop.get("/relays/").get_data(as_text=True))
    laptop.post("/auth/logout", data={"csrf_token": token})
    assert laptop.get("/relays/").status_code == 302
    assert phone.get("/relays/").status_code == 200  # the other login goes on


def test_a_session_older_than_its_lifetime_is_refused_on_the_server(
    make_app: Callable[..., Flask], create_user: Callable, csrf_token_in: Callable
) -> None:
    """Even a cookie whose own expiry was tampered with or ignored stops working."""
    import datetime as dt

    app = make_app(SESSION_LIFETIME_SECONDS=3600)
    client = app.test_client()
    user = create_user("viewer")
    assert _post_login(client, csrf_token_in, user.username, user.password).status_code == 302
    assert client.get("/relays/").status_code == 200
    with app.app_context():
        session = get_session()
        for row in session.scalars(select(LoginSession)):
            row.created_at -= dt.timedelta(seconds=3601)
        session.commit()
    assert client.get("/relays/").status_code == 302


def test_login_without_csrf_token_is_refused(client: FlaskClient, create_user: Callable) -> None:
    user = create_user("admin")
    response = client.post(
        "/auth/login", data={"username": user.username, "password": user.password}
    )
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert client.get("/relays/").status_code == 302


def test_a_form_post_without_csrf_token_is_refused_for_a_logged_in_user(
    admin_client: FlaskClient,
) -> None:
    response = admin_client.post("/auth/logout")
    assert response.status_code == 400
    assert admin_client.get("/relays/").status_code == 200  # still logged in


def test_repeated_bad_logins_are_throttled_even_with_the_right_password(
    make_app: Callable[..., Flask], create_user: Callable, csrf_token_in: Callable
) -> None:
    app = make_app(LOGIN_MAX_FAILURES=3, LOGIN_WINDOW_SECONDS=60)
    client = app.test_client()
    user = create_user("admin")
    for _ in range(3):
        assert _post_login(client, csrf_token_in, user.username, "bad").status_code == 401
    response = _post_login(client, csrf_token_in, user.username, user.password)
    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)
    assert client.get("/relays/").status_code == 302


def test_throttling_ends_when_the_window_has_passed(
    make_app: Callable[..., Flask], create_user: Callable, csrf_token_in: Callable
) -> None:
    import datetime as dt

    app = make_app(LOGIN_MAX_FAILURES=2, LOGIN_WINDOW_SECONDS=60)
    client = app.test_client()
    user = create_user("viewer")
    for _ in range(2):
        _post_login(client, csrf_token_in, user.username, "bad")
    assert _post_login(client, csrf_token_in, user.username, user.password).status_code == 429
    with app.app_context():
        session = get_session()
        for failure in session.scalars(select(LoginFailure)):
            failure.at -= dt.timedelta(seconds=61)  # as if the window had passed
        session.commit()
    assert _post_login(client, csrf_token_in, user.username, user.password).status_code == 302


def test_session_cookie_is_secure_httponly_and_samesite_by_default(
    make_app: Callable[..., Flask], create_user: Callable, csrf_token_in: Callable
) -> None:
    app = make_app(SESSION_COOKIE_SECURE=True)
    client = app.test_client()
    user = create_user("viewer")
    token = csrf_token_in(
        client.get("/auth/login", base_url="https://localhost").get_data(as_text=True)
    )
    response = client.post(
        "/auth/login",
        base_url="https://localhost",
        headers={"Referer": "https://localhost/auth/login"},
        data={"username": user.username, "password": user.password, "csrf_token": token},
    )
    assert response.status_code == 302
    cookie = next(
        value
        for key, value in response.headers.items()
        if key == "Set-Cookie" and value.startswith("altmesh_session=")
    )
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_viewer_cannot_change_anything(viewer_client: FlaskClient, csrf_token_in: Callable) -> None:
    token = csrf_token_in(viewer_client.get("/relays/").get_data(as_text=True))
    response = viewer_client.post("/relays/relay-1/forget", headers={"X-CSRFToken": token})
    assert response.status_code == 403
    assert "operator" in response.get_data(as_text=True)


def test_passwords_are_stored_as_argon2id_hashes(app: Flask, create_user: Callable) -> None:
    user = create_user("viewer")
    with app.app_context():
        row = get_session().scalar(select(User).where(User.username == user.username))
        assert row is not None
        assert row.password_hash.startswith("$argon2id$")
        assert user.password not in row.password_hash


def test_changing_a_password_ends_existing_sessions(
    app: Flask, create_user: Callable, login: Callable
) -> None:
    from altmesh_dashboard.auth.passwords import hash_password

    user = create_user("admin")
    client = app.test_client()
    login(client, user)
    assert client.get("/relays/").status_code == 200
    with app.app_context():
        session = get_session()
        row = session.scalar(select(User).where(User.username == user.username))
        assert row is not None
        row.password_hash = hash_password("a-completely-new-password")
        session.commit()
    assert client.get("/relays/").status_code == 302


def test_users_create_cli_bootstraps_an_admin_who_can_log_in(
    app: Flask, csrf_token_in: Callable
) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["users", "create", "root-admin", "--role", "admin", "--password-stdin"],
        input="bootstrap-password-123\n",
    )
    assert result.exit_code == 0, result.output
    assert "created user root-admin with role admin" in result.output
    again = runner.invoke(
        args=["users", "create", "root-admin", "--password-stdin", "--exists-ok"],
        input="x\n",
    )
    assert again.exit_code == 0 and "unchanged" in again.output
    client = app.test_client()
    response = _post_login(client, csrf_token_in, "root-admin", "bootstrap-password-123")
    assert response.status_code == 302
    with app.app_context():
        entry = get_session().scalar(select(AuditEntry).where(AuditEntry.action == "user.create"))
        assert entry is not None and entry.after == {
            "username": "root-admin",
            "role": "admin",
            "disabled": False,
        }


def test_users_create_cli_rejects_a_short_password_and_a_duplicate(app: Flask) -> None:
    runner = app.test_cli_runner()
    short = runner.invoke(args=["users", "create", "bob", "--password-stdin"], input="short\n")
    assert short.exit_code != 0
    assert "at least 12 characters" in short.output
    runner.invoke(args=["users", "create", "bob", "--password-stdin"], input="long-enough-pw\n")
    duplicate = runner.invoke(
        args=["users", "create", "bob", "--password-stdin"], input="long-enough-pw\n"
    )
    assert duplicate.exit_code != 0
    assert "already exists" in duplicate.output


def test_behind_a_proxy_throttling_counts_the_forwarded_client_address(
    make_app: Callable[..., Flask], csrf_token_in: Callable
) -> None:
    app = make_app(PROXY_COUNT=1, LOGIN_MAX_FAILURES=1)
    client = app.test_client()
    for client_address in ("198.51.100.1", "198.51.100.2"):
        token = csrf_token_in(client.get("/auth/login").get_data(as_text=True))
        client.post(
            "/auth/login",
            headers={"X-Forwarded-For": client_address},
            data={"username": f"user-{client_address}", "password": "x", "csrf_token": token},
        )
    with app.app_context():
        addresses = set(get_session().scalars(select(LoginFailure.remote_addr)))
    assert addresses == {"198.51.100.1", "198.51.100.2"}
