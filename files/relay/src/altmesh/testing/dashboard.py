"""Run the real dashboard (`altmesh_dashboard` under gunicorn) on loopback for tests.

    with DashboardServer.start(workdir, settings={"RELAY_STALE_AFTER_SECONDS": 3}) as dashboard:
        token = dashboard.relay_token("relay1")
        ... a relay reports to dashboard.url ...
        dashboard.relays()          # GET /api/v1/relays, logged in as a viewer

- gunicorn is handed a socket this process has already bound and listens on (`--bind fd://N`):
  choosing a free port and letting the server bind it later is a race another process on a busy
  machine can win. The socket stays open while gunicorn is stopped (`stop()`), so a stopped
  dashboard is one whose connections are accepted by the kernel and never answered, and
  `restart()` serves the same URL again.
- The packaged gunicorn configuration (`altmesh_dashboard.gunicorn_conf`, as the role runs it):
  it validates the settings and migrates the database in the master, and opens no control
  socket. gunicorn runs with `HOME` inside `workdir`.
- Settings are `ALTMESH_DASHBOARD_*` environment variables; the database is a SQLite file in
  `workdir`. The same environment serves the `flask --app altmesh_dashboard` CLI (`flask()`),
  for tokens, users and the liveness check.
- Processes are stopped by PID, never by name.

Needs the `altmesh-dashboard` distribution installed beside `altmesh` (the controller's venv).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class DashboardStartError(RuntimeError):
    """gunicorn exited or did not answer /health in time; carries its log."""


def listening_socket() -> socket.socket:
    """A TCP socket already bound to a free loopback port and listening, to hand to a server
    (gunicorn --bind fd://N)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def gunicorn_bind_arguments(sock: socket.socket) -> tuple[list[str], str]:
    """gunicorn's --bind for an inherited socket, and the URL it serves on."""
    port = int(sock.getsockname()[1])
    return ["--bind", f"fd://{sock.fileno()}"], f"http://127.0.0.1:{port}"


def dashboard_environment(settings: Mapping[str, object], home: Path) -> dict[str, str]:
    """This process's environment without its ALTMESH_DASHBOARD_* variables, plus `settings`
    as ALTMESH_DASHBOARD_<KEY> and HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALTMESH_DASHBOARD_")}
    env.update({f"ALTMESH_DASHBOARD_{key}": _setting(value) for key, value in settings.items()})
    env["HOME"] = str(home)
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def _setting(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class DashboardServer:
    """A running dashboard on `url`; `close()` stops it and releases its socket."""

    def __init__(
        self, workdir: Path, settings: dict[str, object], workers: int, sock: socket.socket
    ) -> None:
        self.workdir = workdir
        self.settings = settings
        self.workers = workers
        self.sock = sock
        bind, self.url = gunicorn_bind_arguments(sock)
        self._bind = bind
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = dashboard_environment(settings, self.home)
        self.log_path = workdir / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._viewer: httpx.Client | None = None

    @classmethod
    def start(
        cls,
        workdir: Path,
        settings: Mapping[str, object] | None = None,
        *,
        workers: int = 2,
    ) -> DashboardServer:
        """Start gunicorn with the dashboard; returns once /health answers 200."""
        workdir.mkdir(parents=True, exist_ok=True)
        merged: dict[str, object] = {
            "SECRET_KEY": "test-" + secrets.token_hex(24),
            "DATABASE_URL": f"sqlite:///{workdir / 'dashboard.sqlite3'}",
            "SESSION_COOKIE_SECURE": False,  # plain HTTP on loopback
            "LOG_LEVEL": "INFO",
            **(settings or {}),
        }
        server = cls(workdir, merged, workers, listening_socket())
        try:
            server.restart()
        except BaseException:
            server.close()
            raise
        return server

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    # ------------------------------------------------------------------ lifetime
    def restart(self) -> None:
        """Start gunicorn again on the same socket (after `stop()`)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the dashboard is running; stop() it first")
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "python:altmesh_dashboard.gunicorn_conf",
                    *self._bind,
                    "--workers",
                    str(self.workers),
                    "--access-logfile",
                    "-",
                    "--error-logfile",
                    "-",
                    "altmesh_dashboard.wsgi:app",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
                pass_fds=(self.sock.fileno(),),
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DashboardStartError(f"gunicorn exited early:\n{self.log_text()[-4000:]}")
            try:
                # The socket listens from the start, so this waits in its backlog until a worker
                # has booted; a timeout only means the workers are still booting.
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise DashboardStartError(f"gunicorn did not answer /health:\n{self.log_text()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop gunicorn by its PID (SIGKILL after STOP_TIMEOUT_SECONDS); the socket stays."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)

    def close(self) -> None:
        self.stop()
        if self._viewer is not None:
            self._viewer.close()
        self.sock.close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ------------------------------------------------------------------ the CLI
    def flask(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run `flask --app altmesh_dashboard ARGS` with this dashboard's settings; its stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "altmesh_dashboard", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.workdir,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"flask {' '.join(args)} exited {result.returncode}:\n{result.stdout}"
                f"{result.stderr}"
            )
        return result.stdout

    def relay_token(self, relay: str) -> str:
        """A new API token of relay `relay` (printed once by the CLI)."""
        return self.flask("tokens", "create", relay).strip().splitlines()[-1]

    def service_token(self, name: str) -> str:
        """A new service token that may publish only `name` (e.g. web.alt)."""
        return self.flask("tokens", "create", "--service", name).strip().splitlines()[-1]

    # ------------------------------------------------------------------ reading it
    def viewer(self) -> httpx.Client:
        """An HTTP client logged in as a viewer (made with the CLI the first time)."""
        if self._viewer is None:
            username, password = "viewer-" + secrets.token_hex(3), secrets.token_hex(16)
            self.flask(
                "users",
                "create",
                username,
                "--role",
                "viewer",
                "--password-stdin",
                stdin=password + "\n",
            )
            client = httpx.Client(base_url=self.url, timeout=10, follow_redirects=False)
            page = client.get("/auth/login")
            match = CSRF_FIELD.search(page.text)
            if match is None:
                raise RuntimeError("the login page has no CSRF token")
            answer = client.post(
                "/auth/login",
                data={"username": username, "password": password, "csrf_token": match[1]},
            )
            if answer.status_code != 302:
                raise RuntimeError(f"login failed: {answer.status_code} {answer.text[:300]}")
            self._viewer = client
        return self._viewer

    def get_json(self, path: str) -> Any:
        answer = self.viewer().get(path)
        answer.raise_for_status()
        return answer.json()

    def relays(self) -> dict[str, dict[str, Any]]:
        """GET /api/v1/relays, by name."""
        return {relay["name"]: relay for relay in self.get_json("/api/v1/relays")["relays"]}

    def stored_events(self, relay: str) -> list[dict[str, Any]]:
        """The security events the dashboard stored for `relay`, read from its SQLite database
        (the API has no JSON listing of events): event_id, kind, severity, peer, detail."""
        url = str(self.settings["DATABASE_URL"])
        if not url.startswith("sqlite:///"):
            raise RuntimeError("stored_events() reads the SQLite database only")
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            rows = db.execute(
                "SELECT e.event_id, e.kind, e.severity, e.peer, e.detail FROM security_events e "
                "JOIN relays r ON r.id = e.relay_id WHERE r.name = ? ORDER BY e.id",
                (relay,),
            ).fetchall()
        return [
            {
                "event_id": row[0],
                "kind": row[1],
                "severity": row[2],
                "peer": row[3],
                "detail": json.loads(row[4]) if isinstance(row[4], str) else row[4],
            }
            for row in rows
        ]
