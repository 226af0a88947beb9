"""Regressions of an outside probe of the dashboard: each used to give a 500, a success that was
not one, or a leak; each is now a clear 4xx (or the right answer) against the real app and
database (SQLite, and PostgreSQL when the suite runs there)."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from altmesh_dashboard.config import ConfigError, load_config
from altmesh_dashboard.db import engine_of, get_session
from altmesh_dashboard.models import Relay, SecurityEvent
from conftest import Credentials, login, using_postgresql
from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from sqlalchemy import func, select, text

KEY = base64.b64encode(bytes(range(32))).decode()
DEEP: list[Any] = [1]
for _ in range(20):
    DEEP = [DEEP]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _registration(**changes: Any) -> dict[str, Any]:
    body = {
        "name": "relay-1",
        "public_key": KEY,
        "address": address_of(KEY),
        "endpoints": [{"host": "192.0.2.10", "port": 7000}],
    }
    body.update(changes)
    return body


@pytest.fixture
def registered(client: FlaskClient, relay_token: Callable[[str], str]) -> str:
    token = relay_token("relay-1")
    response = client.post("/api/v1/relays/register", json=_registration(), headers=_bearer(token))
    assert response.status_code == 201, response.get_data(as_text=True)
    return token


# ------------------------------------------------------------------- sessions


def test_a_session_taken_before_a_user_was_disabled_is_refused_after_re_enabling(
    app: Flask,
    create_user: Callable[..., Credentials],
    admin_client: FlaskClient,
    csrf_token_in: Callable[[str], str],
) -> None:
    victim = create_user("operator")
    stolen = app.test_client()
    login(stolen, victim)
    assert stolen.get("/relays/").status_code == 200
    with app.app_context():
        from altmesh_dashboard.models import User

        user_id = get_session().scalar(select(User.id).where(User.username == victim.username))
    page = admin_client.get("/auth/users").get_data(as_text=True)
    token = csrf_token_in(page)
    prefix = f"u{user_id}"
    for disabled in (True, False):  # disable, then enable again
        data = {"csrf_token": token, f"{prefix}-role": "operator"}
        if disabled:
            data[f"{prefix}-disabled"] = "y"
        response = admin_client.post(f"/auth/users/{user_id}", data=data)
        assert response.status_code == 302, response.get_data(as_text=True)
    refused = stolen.get("/relays/")
    assert refused.status_code == 302
    assert refused.headers["Location"].startswith("/auth/login")
    fresh = app.test_client()
    login(fresh, victim)  # the re-enabled user can log in again
    assert fresh.get("/relays/").status_code == 200


def test_a_login_with_a_crlf_in_next_redirects_home_instead_of_failing(
    client: FlaskClient,
    create_user: Callable[..., Credentials],
    csrf_token_in: Callable[[str], str],
) -> None:
    user = create_user("viewer")
    page = client.get("/auth/login").get_data(as_text=True)
    response = client.post(
        "/auth/login?next=/%0d%0aSet-Cookie:%20evil=1",
        data={
            "username": user.username,
            "password": user.password,
            "csrf_token": csrf_token_in(page),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/relays/"
    assert "evil" not in response.headers.get("Set-Cookie", "")


# ------------------------------------------------------------------- paging


@pytest.mark.parametrize("path", ["/events/", "/audit/"])
@pytest.mark.parametrize("page", ["10000000000000000000000", "9223372036854775807", "-5", "x"])
def test_an_out_of_range_page_number_shows_a_page_that_exists(
    viewer_client: FlaskClient, path: str, page: str
) -> None:
    response = viewer_client.get(f"{path}?page={page}")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]


# ------------------------------------------------------------- relay API input


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"time": "0001-01-01T00:00:00+01:00"}, "events[0].time"),
        ({"time": "9999-12-31T23:59:59-01:00"}, "events[0].time"),
        ({"detail": {"ratio": float("nan")}}, "events[0].detail"),
        ({"detail": {"deep": DEEP}}, "events[0].detail"),
        ({"peer": "198.51.100.7\x00"}, "events[0].peer"),
        ({"detail": {"note": "a\x00b"}}, "events[0].detail"),
    ],
    ids=["year-1", "year-9999", "nan", "too-deep", "nul-peer", "nul-detail"],
)
def test_event_fields_the_database_cannot_hold_are_a_422_naming_the_field(
    client: FlaskClient, registered: str, event: dict[str, Any], field: str
) -> None:
    body = {"events": [{"id": "e1", "time": "2026-01-31T12:00:00Z", "kind": "x", **event}]}
    import json

    raw = json.dumps(body, allow_nan=True)  # NaN as a sender that is not strict would write it
    response = client.post(
        "/api/v1/relays/events",
        data=raw,
        headers={**_bearer(registered), "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    answer = response.get_json()
    if response.status_code == 422:
        assert answer["field"] == field
    else:
        assert "JSON" in answer["error"]  # NaN is not JSON: refused while parsing


@pytest.mark.parametrize(
    "version",
    ['"\\ud800"', '"1.0\\u0000"', '"1.0\\u0007"'],
    ids=["lone-surrogate", "nul", "control"],
)
def test_a_version_that_is_not_storable_text_is_refused(
    client: FlaskClient, registered: str, version: str
) -> None:
    raw = (
        f'{{"load": 0.1, "active_streams": 0, "bytes_in": 0, "bytes_out": 0, "version": {version}}}'
    )
    response = client.post(
        "/api/v1/relays/heartbeat",
        data=raw,
        headers={**_bearer(registered), "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    if response.status_code == 422:
        assert response.get_json()["field"] == "version"


def test_deeply_nested_json_is_a_client_error_not_a_500(
    client: FlaskClient, registered: str
) -> None:
    raw = '{"events": ' + "[" * 30000 + "]" * 30000 + "}"
    response = client.post(
        "/api/v1/relays/events",
        data=raw,
        headers={**_bearer(registered), "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"endpoints": [{"host": "a..b", "port": 7000}]}, "endpoints[0].host"),
        ({"endpoints": [{"host": "x" * 200 + ".example", "port": 7000}]}, "endpoints[0].host"),
        ({"endpoints": [{"host": "fe80::1%eth0", "port": 7000}]}, "endpoints[0].host"),
        ({"endpoints": [{"host": "fe80::1", "port": 7000}]}, "endpoints[0].host"),
        ({"endpoints": [{"host": "0.0.0.0", "port": 7000}]}, "endpoints[0].host"),
        ({"endpoints": [{"host": "-a.example", "port": 7000}]}, "endpoints[0].host"),
        ({"address": address_of(KEY) + "%eth0"}, "address"),
    ],
    ids=["empty-label", "long-label", "scoped", "link-local", "unspecified", "dash", "zone-id"],
)
def test_registrations_with_unreachable_or_malformed_endpoints_are_refused(
    client: FlaskClient,
    relay_token: Callable[[str], str],
    changes: dict[str, Any],
    field: str,
) -> None:
    response = client.post(
        "/api/v1/relays/register",
        json=_registration(**changes),
        headers=_bearer(relay_token("relay-1")),
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["field"] == field


def test_a_registration_whose_address_is_not_the_keys_is_refused(
    client: FlaskClient, relay_token: Callable[[str], str]
) -> None:
    other = base64.b64encode(bytes(32)).decode()
    response = client.post(
        "/api/v1/relays/register",
        json=_registration(address=address_of(other)),
        headers=_bearer(relay_token("relay-1")),
    )
    assert response.status_code == 422
    answer = response.get_json()
    assert answer["field"] == "address"
    assert address_of(KEY) in answer["error"]  # the message says which address the key has


def test_a_registration_outside_fd00_8_is_refused_without_a_network_prefix(
    client: FlaskClient, relay_token: Callable[[str], str]
) -> None:
    response = client.post(
        "/api/v1/relays/register",
        json=_registration(address=address_of(KEY, "fd00:1:2::/48").replace("fd00", "fc00", 1)),
        headers=_bearer(relay_token("relay-1")),
    )
    assert response.status_code == 422
    assert "fd00::/8" in response.get_json()["error"]


def test_a_resent_event_batch_is_stored_once(
    app: Flask, client: FlaskClient, registered: str
) -> None:
    batch = {
        "events": [
            {"id": "r1-1", "time": "2026-01-31T12:00:00Z", "kind": "handshake_failed"},
            {"id": "r1-2", "time": "2026-01-31T12:00:01Z", "kind": "rekey", "severity": "info"},
        ]
    }
    first = client.post("/api/v1/relays/events", json=batch, headers=_bearer(registered))
    assert (first.status_code, first.get_json()) == (202, {"accepted": 2, "duplicates": 0})
    batch["events"].append({"id": "r1-3", "time": "2026-01-31T12:00:02Z", "kind": "rekey"})
    again = client.post("/api/v1/relays/events", json=batch, headers=_bearer(registered))
    assert (again.status_code, again.get_json()) == (202, {"accepted": 1, "duplicates": 2})
    with app.app_context():
        ids = get_session().scalars(select(SecurityEvent.event_id).order_by(SecurityEvent.id))
        assert list(ids) == ["r1-1", "r1-2", "r1-3"]


def test_two_workers_receiving_the_same_batch_at_once_store_it_once(
    app: Flask, live_server_factory: Callable[..., Any], registered: str
) -> None:
    """Four gunicorn workers, eight concurrent senders of one batch: the unique (relay, id)
    constraint with ON CONFLICT DO NOTHING lets exactly one insert of each event win."""
    from concurrent.futures import ThreadPoolExecutor

    server = live_server_factory(workers=4)
    batch = {
        "events": [
            {"id": f"same-{i}", "time": "2026-01-31T12:00:00Z", "kind": "x"} for i in range(50)
        ]
    }

    def send(_: int) -> dict[str, int]:
        response = requests.post(
            server.url + "/api/v1/relays/events",
            json=batch,
            headers=_bearer(registered),
            timeout=60,
        )
        assert response.status_code == 202, response.text
        answer: dict[str, int] = response.json()
        return answer

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert sum(a["accepted"] for a in answers) == 50
    assert sum(a["duplicates"] for a in answers) == 8 * 50 - 50
    with app.app_context():
        stored = get_session().scalar(select(func.count()).select_from(SecurityEvent))
    assert stored == 50


def test_attached_nodes_are_recorded_and_replaced_by_the_next_heartbeat(
    app: Flask, client: FlaskClient, registered: str
) -> None:
    first = [address_of(base64.b64encode(bytes([i]) * 32).decode()) for i in range(1, 4)]
    beat = {"load": 0.1, "active_streams": 0, "bytes_in": 0, "bytes_out": 0, "version": "1"}
    response = client.post(
        "/api/v1/relays/heartbeat", json={**beat, "attached": first}, headers=_bearer(registered)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    response = client.post(
        "/api/v1/relays/heartbeat",
        json={**beat, "attached": first[1:]},
        headers=_bearer(registered),
    )
    assert response.status_code == 200
    with app.app_context():
        from altmesh_dashboard.models import Attachment

        stored = get_session().scalars(select(Attachment.address).order_by(Attachment.address))
        assert list(stored) == sorted(first[1:])
    twice = client.post(
        "/api/v1/relays/heartbeat",
        json={**beat, "attached": [first[0], first[0]]},
        headers=_bearer(registered),
    )
    assert twice.status_code == 422
    assert twice.get_json()["field"] == "attached[1]"


# --------------------------------------------------------------------- health


def test_health_is_503_while_the_database_cannot_be_written(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """A writer that holds the database's lock (SQLite) or a database switched to read-only
    (PostgreSQL): reads still work, writes do not, and /health says so."""
    app = make_app()
    engine = engine_of(app)
    if using_postgresql():
        with engine.connect() as connection:
            name = connection.execute(text("SELECT current_database()")).scalar()
            connection.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            )
            connection.commit()
        engine.dispose()
        try:
            response = app.test_client().get("/health")
        finally:
            # New sessions of this database start read-only: in autocommit mode the SET comes
            # first, so the ALTER runs in a transaction that began read-write.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("SET default_transaction_read_only = off"))
                connection.execute(
                    text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
                )
            engine.dispose()
    else:
        path = engine.url.database
        assert path is not None
        holder = sqlite3.connect(path, timeout=1)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            response = app.test_client().get("/health")
        finally:
            holder.rollback()
            holder.close()
    assert response.status_code == 503
    assert response.get_json() == {"status": "unhealthy", "database": "not writable"}
    assert app.test_client().get("/health").status_code == 200  # writable again at once


# ------------------------------------------------------------------ TLS, config


def test_hsts_is_sent_over_https_and_not_over_plain_http(make_app: Callable[..., Flask]) -> None:
    app = make_app(PROXY_COUNT=1)
    client = app.test_client()
    plain = client.get("/health")
    assert "Strict-Transport-Security" not in plain.headers
    behind_tls_proxy = client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert behind_tls_proxy.headers["Strict-Transport-Security"] == "max-age=31536000"
    direct_tls = client.get("/health", base_url="https://dashboard.example")
    assert direct_tls.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_wrongly_typed_secret_is_never_echoed(tmp_path: Path) -> None:
    config = tmp_path / "dashboard.toml"
    config.write_text(
        "SECRET_KEY = 123456789012345678901234567890123456789\n"
        "METRICS_TOKEN = 31415926535897932384626\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config({"CONFIG_FILE": str(config)}, environ={})
    message = raised.value.message
    assert "SECRET_KEY" in message and "METRICS_TOKEN" in message
    assert "123456789012345678901234567890123456789" not in message
    assert "31415926535897932384626" not in message
    assert "value not shown" in message


def test_an_unreachable_postgresql_is_a_message_and_exit_status_3(tmp_path: Path) -> None:
    from dns_support import closed_port

    with closed_port() as port:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALTMESH_DASHBOARD_")}
        env.update(
            {
                "ALTMESH_DASHBOARD_SECRET_KEY": "s" * 40,
                "ALTMESH_DASHBOARD_DATABASE_URL": (
                    f"postgresql+psycopg://dash:hunter2-secret@127.0.0.1:{port}/dashboard"
                ),
            }
        )
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "altmesh_dashboard", "db", "upgrade"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "Traceback" not in output
    assert "cannot use the database postgresql+psycopg://dash:***@127.0.0.1" in output
    assert "hunter2-secret" not in output
    assert len(output.strip().splitlines()) <= 3


def test_two_dashboards_of_one_user_share_no_gunicorn_control_socket(
    base_config: dict[str, Any], app: Flask, tmp_path: Path
) -> None:
    """The packaged gunicorn config disables the control socket that gunicorn 25.1+ opens at
    ~/.gunicorn/gunicorn.ctl: two instances under one HOME both serve, and neither made one."""
    from conftest import gunicorn_bind_arguments, listening_socket

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALTMESH_DASHBOARD_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(
        {
            "HOME": str(home),
            "ALTMESH_DASHBOARD_SECRET_KEY": base_config["SECRET_KEY"],
            "ALTMESH_DASHBOARD_DATABASE_URL": base_config["DATABASE_URL"],
            "ALTMESH_DASHBOARD_SESSION_COOKIE_SECURE": "false",
            "WEB_CONCURRENCY": "1",
        }
    )
    processes = []
    sockets = [listening_socket(), listening_socket()]
    try:
        urls = []
        for sock in sockets:
            bind, url = gunicorn_bind_arguments(sock)
            urls.append(url)
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "-c",
                        "python:altmesh_dashboard.gunicorn_conf",
                        *bind,
                        "altmesh_dashboard.wsgi:app",
                    ],
                    env=env,
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    pass_fds=(sock.fileno(),),
                )
            )
        for url in urls:
            assert requests.get(url + "/health", timeout=60).status_code == 200
        assert not (home / ".gunicorn").exists()
    finally:
        from conftest import _stop

        for process in processes:
            _stop(process)
        for sock in sockets:
            sock.close()


def test_relay_rows_keep_links_sorted_as_reported(
    app: Flask, client: FlaskClient, registered: str
) -> None:
    beat = {
        "load": 0.1,
        "active_streams": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "version": "1",
        "links": [{"peer": "r3", "state": "up", "rtt_ms": 2.5}, {"peer": "r2", "state": "down"}],
    }
    assert (
        client.post("/api/v1/relays/heartbeat", json=beat, headers=_bearer(registered)).status_code
        == 200
    )
    with app.app_context():
        relay = get_session().scalar(select(Relay))
        assert relay is not None
        assert relay.links == [
            {"peer": "r2", "state": "down", "rtt_ms": None},
            {"peer": "r3", "state": "up", "rtt_ms": 2.5},
        ]
