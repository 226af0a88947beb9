"""Fixtures shared by every dashboard test (the DNS tests use them too).

Database: SQLite in a temporary file per test by default; PostgreSQL when
DASHBOARD_TEST_DATABASE_URL names a server (postgresql+psycopg://user@host:port/db): one fresh
database per session, emptied after every test.

- make_app(**overrides) / app / client: the app built by create_app on the test database.
- create_user(role, username=None) -> Credentials; login(client, credentials).
- admin_client / operator_client / viewer_client: test clients already logged in.
- relay_token(relay_name) -> str: a fresh relay API token.
- live_server_factory(**settings) / live_server: the app under gunicorn on a loopback socket the
  test binds first and hands over (no race for a port).
- browser / page: Debian's Chromium through Playwright, headless.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

# One way to start gunicorn on an inherited socket, shared with the relay's reporting tests.
from altmesh.testing.dashboard import gunicorn_bind_arguments, listening_socket
from altmesh_dashboard import create_app
from altmesh_dashboard.auth.passwords import hash_password
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import Base, User
from altmesh_dashboard.tokens import create_token
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL_ENV = "DASHBOARD_TEST_DATABASE_URL"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BROWSER_TIMEOUT_MS = 30_000
TEST_SECRET_KEY = "test-secret-key-" + secrets.token_hex(16)


def using_postgresql() -> bool:
    return bool(os.environ.get(POSTGRES_URL_ENV))


@pytest.fixture(scope="session")
def postgresql_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this session, dropped at the end (None on SQLite)."""
    server_url = os.environ.get(POSTGRES_URL_ENV)
    if not server_url:
        yield None
        return
    name = f"altmesh_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def database_url(postgresql_database: str | None, tmp_path: Path) -> Iterator[str]:
    if postgresql_database is None:
        yield f"sqlite:///{tmp_path / 'dashboard.sqlite3'}"
        return
    yield postgresql_database
    engine = create_engine(postgresql_database)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        exists = connection.execute(text("SELECT to_regclass('users')")).scalar()
        if exists:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def base_config(database_url: str) -> dict[str, Any]:
    return {
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "SESSION_COOKIE_SECURE": False,  # tests speak plain HTTP on loopback
        "TESTING": True,
    }


@pytest.fixture
def make_app(base_config: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app({**base_config, **overrides})
        apps.append(app)
        return app

    yield build
    for app in apps:
        from altmesh_dashboard.db import engine_of

        engine_of(app).dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    role: str


@pytest.fixture
def create_user(app: Flask) -> Callable[..., Credentials]:
    def create(role: str = "viewer", username: str | None = None) -> Credentials:
        credentials = Credentials(
            username or f"{role}-{secrets.token_hex(3)}", "pw-" + secrets.token_hex(12), role
        )
        with app.app_context():
            session = get_session()
            session.add(
                User(
                    username=credentials.username,
                    password_hash=hash_password(credentials.password),
                    role=role,
                )
            )
            session.commit()
        return credentials

    return create


def csrf_token_in(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    if match is None:
        raise AssertionError("the page has no CSRF token field")
    return match.group(1)


def login(client: FlaskClient, credentials: Credentials) -> None:
    page = client.get("/auth/login")
    response = client.post(
        "/auth/login",
        data={
            "username": credentials.username,
            "password": credentials.password,
            "csrf_token": csrf_token_in(page.get_data(as_text=True)),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.fixture
def admin_client(app: Flask, create_user: Callable[..., Credentials]) -> FlaskClient:
    client = app.test_client()
    login(client, create_user("admin"))
    return client


@pytest.fixture
def operator_client(app: Flask, create_user: Callable[..., Credentials]) -> FlaskClient:
    client = app.test_client()
    login(client, create_user("operator"))
    return client


@pytest.fixture
def viewer_client(app: Flask, create_user: Callable[..., Credentials]) -> FlaskClient:
    client = app.test_client()
    login(client, create_user("viewer"))
    return client


@pytest.fixture
def relay_token(app: Flask) -> Callable[[str], str]:
    def make(relay_name: str) -> str:
        with app.app_context():
            session = get_session()
            _row, token = create_token(session, relay_name, "test")
            session.commit()
        return token

    return make


@dataclass
class LiveServer:
    url: str
    pid: int
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture
def live_server_factory(
    app: Flask, base_config: dict[str, Any], tmp_path: Path
) -> Iterator[Callable[..., LiveServer]]:
    """Start the dashboard under gunicorn, with its packaged configuration, on
    127.0.0.1:<free port>; extra keyword arguments become ALTMESH_DASHBOARD_* settings. The `app`
    fixture has already migrated the database (the arbiter's own migration finds nothing to do)."""
    processes: list[subprocess.Popen[bytes]] = []
    sockets: list[socket.socket] = []
    home = tmp_path / "gunicorn-home"
    home.mkdir()

    def start(workers: int = 2, **settings: Any) -> LiveServer:
        sock = listening_socket()
        sockets.append(sock)
        bind, url = gunicorn_bind_arguments(sock)
        port = int(sock.getsockname()[1])
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("ALTMESH_DASHBOARD_")
        }
        merged = {
            "SECRET_KEY": base_config["SECRET_KEY"],
            "DATABASE_URL": base_config["DATABASE_URL"],
            "SESSION_COOKIE_SECURE": "false",
            "AUTO_MIGRATE": "false",
            "LOG_LEVEL": "INFO",
            **settings,
        }
        env.update({f"ALTMESH_DASHBOARD_{key}": str(value) for key, value in merged.items()})
        env["HOME"] = str(home)  # whatever gunicorn leaves in its home is seen below
        env.pop("XDG_RUNTIME_DIR", None)
        log_path = tmp_path / f"gunicorn-{port}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    # The packaged settings, as the role runs it: no control socket in
                    # ~/.gunicorn shared by every gunicorn of this user (tests included).
                    "-c",
                    "python:altmesh_dashboard.gunicorn_conf",
                    *bind,
                    "--workers",
                    str(workers),
                    "--access-logfile",
                    "-",
                    "--error-logfile",
                    "-",
                    "altmesh_dashboard.wsgi:app",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
                pass_fds=(sock.fileno(),),
            )
        processes.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited early:\n{log_path.read_text()}")
            try:
                # The socket listens from the start, so this waits in its backlog until a
                # worker has booted; a timeout only means the workers are still booting.
                if requests.get(url + "/health", timeout=5).status_code == 200:
                    return LiveServer(url, process.pid, log_path)
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer /health in 60 s:\n{log_path.read_text()}")

    try:
        yield start
    finally:
        for process in processes:
            _stop(process)
        for sock in sockets:
            sock.close()
    # gunicorn's default control socket (~/.gunicorn/gunicorn.ctl) would be shared by every
    # gunicorn of this user: the packaged config has none, and neither do the tests.
    assert not (home / ".gunicorn").exists(), "a live server made ~/.gunicorn"


@pytest.fixture
def live_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not session-wide: while Playwright's sync API is active it
    keeps an event loop running in the main thread, which breaks asyncio.run() in later tests."""
    from playwright.sync_api import expect, sync_playwright

    # expect(...) retries until this deadline: generous, because CI runs on a loaded 2-core host.
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def browser_login(page: Any, server: LiveServer, credentials: Credentials) -> None:
    page.goto(server.url + "/auth/login")
    page.fill("input[name=username]", credentials.username)
    page.fill("input[name=password]", credentials.password)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/relays/")


@pytest.fixture(name="login")
def login_fixture() -> Callable[[FlaskClient, Credentials], None]:
    """login(client, credentials): log a test client in through the real form (with CSRF)."""
    return login


@pytest.fixture(name="csrf_token_in")
def csrf_token_in_fixture() -> Callable[[str], str]:
    """csrf_token_in(html): the CSRF token of the first form in a page."""
    return csrf_token_in


@pytest.fixture(name="browser_login")
def browser_login_fixture() -> Callable[[Any, LiveServer, Credentials], None]:
    """browser_login(page, live_server, credentials): log in through the browser."""
    return browser_login
