"""How many relay heartbeats per second the dashboard sustains under gunicorn on loopback, on
SQLite and on PostgreSQL 15, beside the peer measured in the same run: the same server's /health
(one trivial query, no writes), the ceiling of this server + client on this machine.

Each heartbeat is a real API call: token lookup, relay update, three links upserted, a history
row inserted, a commit. Run: .venv/bin/python bench/bench_dashboard.py  (BENCH_SECONDS=8)."""

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
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
WORKERS = int(os.environ.get("BENCH_WORKERS", str(os.cpu_count() or 2)))
RELAYS = 20
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgresql() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on a free loopback port, stopped by pg_ctl/PID."""
    directory = Path(tempfile.mkdtemp(prefix="altmesh-bench-pg."))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    port = free_port()
    subprocess.run(
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
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
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
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        pid_file = data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        stopped = subprocess.run(
            [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        if stopped.returncode != 0 and pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # pg_ctl could not stop it: stop it by PID
        shutil.rmtree(directory, ignore_errors=True)


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
def gunicorn(database_url: str, secret_key: str) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALTMESH_DASHBOARD_")}
    env.update(
        {
            "ALTMESH_DASHBOARD_SECRET_KEY": secret_key,
            "ALTMESH_DASHBOARD_DATABASE_URL": database_url,
            "ALTMESH_DASHBOARD_AUTO_MIGRATE": "false",
            "ALTMESH_DASHBOARD_LOG_LEVEL": "WARNING",
        }
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--log-level",
            "warning",
            "altmesh_dashboard.wsgi:app",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


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


def rate(
    port: int, method: str, path: str, body: bytes, tokens: list[str], seconds: float = SECONDS
) -> tuple[float, int]:
    jobs = [
        (port, method, path, body, tokens[i % len(tokens)] if tokens else "", seconds)
        for i in range(CLIENTS)
    ]
    with multiprocessing.get_context("fork").Pool(CLIENTS) as pool:
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


def measure(label: str, database_url: str) -> tuple[str, float, float, int]:
    secret_key = secrets.token_hex(32)
    tokens = prepare(database_url, secret_key)
    with gunicorn(database_url, secret_key) as port:
        rate(port, "POST", "/api/v1/relays/heartbeat", HEARTBEAT, tokens, 1.0)  # warm-up
        heartbeats, failures = rate(port, "POST", "/api/v1/relays/heartbeat", HEARTBEAT, tokens)
        health, _ = rate(port, "GET", "/health", b"", [])
    return label, heartbeats, health, failures


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="altmesh-bench-sqlite.") as directory:
        rows.append(measure("SQLite (WAL)", f"sqlite:///{directory}/bench.sqlite3"))
    if (PG_BIN / "initdb").exists():
        with postgresql() as url:
            rows.append(measure("PostgreSQL 15", url))
    else:
        print("PostgreSQL 15 not installed (make host): PostgreSQL row skipped")
    print(
        f"dashboard heartbeats/s: gunicorn {WORKERS} sync workers on loopback, "
        f"{CLIENTS} client processes, {SECONDS:.0f} s per figure, {RELAYS} relays"
    )
    print(f"{'database':<16}{'heartbeats/s':>14}{'/health/s (peer)':>18}{'ratio':>8}{'failed':>8}")
    for label, heartbeats, health, failures in rows:
        print(
            f"{label:<16}{heartbeats:>14.0f}{health:>18.0f}{heartbeats / health:>8.0%}{failures:>8}"
        )


if __name__ == "__main__":
    main()
