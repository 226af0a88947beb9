"""How many relay heartbeats per second the dashboard sustains under gunicorn on loopback, on
SQLite and on PostgreSQL 15, beside the peer measured in the same run: the same server's /health
(one trivial query, no writes), the ceiling of this server + client on this machine.

Each heartbeat is a real API call: token lookup, relay update, three links upserted, a history
row inserted, a commit. Run: .venv/bin/python bench/bench_dashboard.py  (BENCH_SECONDS=8).
Exits 1 if a server does not start, a request fails, or PostgreSQL 15 is missing (make host):
every figure needs its peer. Every server it starts is stopped by PID, also on failure.
"""

from __future__ import annotations

import base64
import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
WORKERS = int(os.environ.get("BENCH_WORKERS", str(os.cpu_count() or 2)))
RELAYS = 20
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A free loopback port for PostgreSQL (it binds its own socket: it cannot inherit one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Same as listening_socket()/gunicorn_bind_arguments() in files/dashboard/tests/conftest.py;
# not imported from there because that module is a pytest conftest (it imports pytest,
# Playwright fixtures and the test database setup), not a library.
def listening_socket() -> socket.socket:
    """A TCP socket already bound to a free loopback port and listening, to hand to gunicorn
    (--bind fd://N): choosing a free port and letting the server bind it later is a race another
    process on a busy machine can win."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def gunicorn_bind_arguments(sock: socket.socket) -> tuple[list[str], str]:
    """gunicorn's --bind for an inherited socket, and the URL it serves on."""
    port = int(sock.getsockname()[1])
    return ["--bind", f"fd://{sock.fileno()}"], f"http://127.0.0.1:{port}"


@contextmanager
def postgresql() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on a free loopback port, stopped by pg_ctl, then by the
    PID in postmaster.pid if pg_ctl could not; its directory removed, also on failure."""
    directory = Path(tempfile.mkdtemp(prefix="altmesh-bench-pg."))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = directory / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        port = free_port()
        run_checked(
            [
                *as_postgres,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-instructions",
            ]
        )
        run_checked(
            [
                *as_postgres,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(directory / "log"),
                "-w",
                "-o",
                f"-p {port} -k {directory} -c listen_addresses=127.0.0.1",
                "start",
            ],
            log=directory / "log",
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        # Also when start failed or timed out: a postmaster may be up even so.
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            stopped = subprocess.run(
                [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                capture_output=True,
            )
            if stopped.returncode != 0:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # pg_ctl could not stop it: stop it by PID
        shutil.rmtree(directory, ignore_errors=True)


def run_checked(argv: list[str], log: Path | None = None) -> None:
    """Run a setup command; on failure raise with its output (and the server log) in the error."""
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        server_log = tail(log) if log is not None else ""
        raise RuntimeError(
            f"{Path(argv[argv.index('--') + 1] if '--' in argv else argv[0]).name} exited "
            f"{result.returncode}: {result.stdout}{result.stderr}{server_log}"
        )


def prepare(database_url: str, secret_key: str) -> list[str]:
    """Migrate, and make RELAYS registered relays with tokens; returns the tokens."""
    from altmesh_dashboard import create_app
    from altmesh_dashboard.db import engine_of, get_session
    from altmesh_dashboard.tokens import create_token

    app = create_app({"SECRET_KEY": secret_key, "DATABASE_URL": database_url})
    tokens = []
    with app.app_context():
        session = get_session()
        for index in range(RELAYS):
            tokens.append(create_token(session, f"bench-{index}", "bench")[1])
        session.commit()
    client = app.test_client()
    for index, token in enumerate(tokens):
        response = client.post(
            "/api/v1/relays/register",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "name": f"bench-{index}",
                "public_key": base64.b64encode(bytes(32)).decode(),
                "address": f"fd00::{index + 1:x}",
                "endpoints": [{"host": "192.0.2.1", "port": 7000}],
            },
        )
        assert response.status_code == 201, response.get_data(as_text=True)
    engine_of(app).dispose()
    return tokens


@contextmanager
def gunicorn(database_url: str, secret_key: str, log: Path) -> Iterator[int]:
    """The dashboard under gunicorn on a socket bound here first; stopped by PID (SIGTERM, then
    SIGKILL to its process group so no worker outlives it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALTMESH_DASHBOARD_")}
    env.update(
        {
            "ALTMESH_DASHBOARD_SECRET_KEY": secret_key,
            "ALTMESH_DASHBOARD_DATABASE_URL": database_url,
            "ALTMESH_DASHBOARD_AUTO_MIGRATE": "false",
            "ALTMESH_DASHBOARD_LOG_LEVEL": "WARNING",
        }
    )
    with listening_socket() as sock, open(log, "ab") as log_file:
        bind, _url = gunicorn_bind_arguments(sock)
        port = int(sock.getsockname()[1])
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *bind,
                "--workers",
                str(WORKERS),
                "--log-level",
                "warning",
                "altmesh_dashboard.wsgi:app",
            ],
            env=env,
            stdout=log_file,
            stderr=log_file,
            pass_fds=(sock.fileno(),),
            start_new_session=True,  # its own process group: its workers can be stopped with it
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {process.returncode}:\n{tail(log)}")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer /health within 60 s:\n{tail(log)}")
            time.sleep(0.1)
        yield port
    finally:
        stop_gunicorn(process)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no output)"


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)  # graceful: the master stops its workers
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Workers that outlived a master killed by SIGKILL still share its process group.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _client(args: tuple[int, str, str, bytes, str, float]) -> tuple[int, int]:
    port, method, path, body, token, seconds = args
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ok = failed = 0
    end = time.monotonic() + seconds
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < end:
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                ok += 1
            else:
                failed += 1
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
        except (OSError, http.client.HTTPException):
            failed += 1
            connection.close()
    return ok, failed


def _default_sigterm() -> None:
    # Pool.terminate() stops clients with SIGTERM: they must just die, not run main's handler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def rate(
    port: int, method: str, path: str, body: bytes, tokens: list[str], seconds: float = SECONDS
) -> tuple[float, int]:
    jobs = [
        (port, method, path, body, tokens[i % len(tokens)] if tokens else "", seconds)
        for i in range(CLIENTS)
    ]
    with multiprocessing.get_context("fork").Pool(CLIENTS, initializer=_default_sigterm) as pool:
        results = pool.map(_client, jobs)
    return sum(ok for ok, _ in results) / seconds, sum(failed for _, failed in results)


HEARTBEAT = json.dumps(
    {
        "load": 0.42,
        "active_streams": 17,
        "bytes_in": 123456789,
        "bytes_out": 987654321,
        "version": "0.1.0",
        "links": [{"peer": f"bench-{i}", "state": "up", "rtt_ms": 1.5 + i} for i in range(3)],
    }
).encode()


def measure(label: str, database_url: str, log: Path) -> tuple[str, float, float, int]:
    secret_key = secrets.token_hex(32)
    tokens = prepare(database_url, secret_key)
    with gunicorn(database_url, secret_key, log) as port:
        rate(port, "POST", "/api/v1/relays/heartbeat", HEARTBEAT, tokens, 1.0)  # warm-up
        heartbeats, heartbeat_failures = rate(
            port, "POST", "/api/v1/relays/heartbeat", HEARTBEAT, tokens
        )
        health, health_failures = rate(port, "GET", "/health", b"", [])
    return label, heartbeats, health, heartbeat_failures + health_failures


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # bench/run.sh stops a benchmark with SIGTERM: unwind so every finally stops its server.
    print("bench_dashboard: stopped by SIGTERM, stopping its servers", file=sys.stderr)
    raise SystemExit(143)


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if not (PG_BIN / "initdb").exists():
        print(f"{PG_BIN / 'initdb'} is missing: install PostgreSQL 15 (make host)", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="altmesh-bench-dashboard.") as directory:
        logs = Path(directory)
        rows.append(
            measure("SQLite (WAL)", f"sqlite:///{directory}/bench.sqlite3", logs / "sqlite.log")
        )
        with postgresql() as url:
            rows.append(measure("PostgreSQL 15", url, logs / "postgresql.log"))
    print(
        f"dashboard heartbeats/s: gunicorn {WORKERS} sync workers on loopback, "
        f"{CLIENTS} client processes, {SECONDS:.0f} s per figure, {RELAYS} relays"
    )
    print(f"{'database':<16}{'heartbeats/s':>14}{'/health/s (peer)':>18}{'ratio':>8}{'failed':>8}")
    for label, heartbeats, health, failures in rows:
        print(
            f"{label:<16}{heartbeats:>14.0f}{health:>18.0f}{heartbeats / health:>8.0%}{failures:>8}"
        )
    failed = sum(failures for *_, failures in rows)
    if failed:
        print(f"bench_dashboard: {failed} requests failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        print("bench_dashboard: FAILED (see above)", file=sys.stderr)
        sys.exit(1)
