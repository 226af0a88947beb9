"""How many relay heartbeats per second the dashboard sustains under gunicorn on loopback, on
SQLite and on PostgreSQL 15, beside the peers measured in the same run: the same server's /health
(the app's cheapest answer: one trivial query), and a no-op WSGI app under the same gunicorn
settings, the ceiling of gunicorn + client on this machine at this moment.

gunicorn runs with the packaged configuration (altmesh_dashboard.gunicorn_conf, as the dashboard
role runs it: gthread workers, keep-alive, access log). Each figure is measured twice: with
clients that keep their connection alive (as relays do: one httpx client per relay) and with
clients that open a new connection for every request (`Connection: close`).

Each heartbeat is a real API call: token lookup, relay row update (links in it), a history row
inserted, a commit. Run: .venv/bin/python bench/bench_dashboard.py  (BENCH_SECONDS=6;
BENCH_WORKERS and BENCH_THREADS override the packaged WEB_CONCURRENCY and WEB_THREADS).
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
from typing import Any

from altmesh.testing import ports

SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
WORKERS = os.environ.get("BENCH_WORKERS", "")  # "": the packaged default (one per CPU)
THREADS = os.environ.get("BENCH_THREADS", "")  # "": the packaged default
RELAYS = 20
GOAL_RATE = 2000.0  # heartbeats/s (issue 8)
GOAL_RATIO = 0.70  # of /health/s in the same run
MODES = ("keep-alive", "new connection")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def noop_app(environ: dict[str, object], start_response: Any) -> list[bytes]:
    """The no-op peer: what gunicorn and the clients cost without any application work."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def free_port() -> int:
    """A free loopback port for PostgreSQL (it binds its own socket: it cannot inherit one),
    below the ephemeral range so that no outgoing connection takes it first."""
    return ports.free_port()


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


def _key(index: int) -> bytes:
    return bytes([index + 1]) * 32


def _address(index: int) -> str:
    """The overlay address of relay `index`'s key (the dashboard checks that it names the key)."""
    from altmesh.protocol.address import network_prefix, node_address

    return str(node_address(network_prefix("fd00:be7c::/48"), _key(index)))


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
                "public_key": base64.b64encode(_key(index)).decode(),
                "address": _address(index),
                "endpoints": [{"host": "192.0.2.1", "port": 7000}],
            },
        )
        assert response.status_code == 201, response.get_data(as_text=True)
    engine_of(app).dispose()
    return tokens


@contextmanager
def gunicorn(
    database_url: str, secret_key: str, log: Path, app: str = "altmesh_dashboard.wsgi:app"
) -> Iterator[int]:
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
    for variable, value in (("WEB_CONCURRENCY", WORKERS), ("WEB_THREADS", THREADS)):
        env.pop(variable, None)
        if value:
            env[variable] = value
    with listening_socket() as sock, open(log, "ab") as log_file:
        bind, _url = gunicorn_bind_arguments(sock)
        port = int(sock.getsockname()[1])
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:altmesh_dashboard.gunicorn_conf",  # as the dashboard role runs it
                *bind,
                "--log-level",
                "warning",
                "--chdir",
                str(Path(__file__).resolve().parent),  # where noop_app is found
                app,
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


def _client(args: tuple[int, str, str, bytes, str, float, str]) -> tuple[int, int]:
    port, method, path, body, token, seconds, mode = args
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if mode != "keep-alive":
        headers["Connection"] = "close"  # http.client then opens a new connection each time
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
    port: int,
    method: str,
    path: str,
    body: bytes,
    tokens: list[str],
    mode: str,
    seconds: float = SECONDS,
) -> tuple[float, int]:
    jobs = [
        (port, method, path, body, tokens[i % len(tokens)] if tokens else "", seconds, mode)
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


ROUNDS = 3  # heartbeats and /health measured in turns, so a change of load hits both alike


# database, client mode, heartbeats/s, /health/s, failures
Row = tuple[str, str, float, float, int]
# database, heartbeat µs, /health µs
CpuRow = tuple[str, float, float]


def measure(label: str, database_url: str, log: Path) -> tuple[list[Row], CpuRow]:
    secret_key = secrets.token_hex(32)
    tokens = prepare(database_url, secret_key)
    beat_cpu, health_cpu = app_cpu(database_url, secret_key, tokens)
    rows: list[Row] = []
    with gunicorn(database_url, secret_key, log) as port:
        for mode in MODES:
            rate(port, "POST", "/api/v1/relays/heartbeat", HEARTBEAT, tokens, mode, 1.0)  # warm
            heartbeats = health = 0.0
            failures = 0
            for _ in range(ROUNDS):
                beats, beat_failures = rate(
                    port,
                    "POST",
                    "/api/v1/relays/heartbeat",
                    HEARTBEAT,
                    tokens,
                    mode,
                    SECONDS / ROUNDS,
                )
                checks, check_failures = rate(
                    port, "GET", "/health", b"", [], mode, SECONDS / ROUNDS
                )
                heartbeats += beats / ROUNDS
                health += checks / ROUNDS
                failures += beat_failures + check_failures
            rows.append((label, mode, heartbeats, health, failures))
    return rows, (label, beat_cpu, health_cpu)


APP_CPU_REQUESTS = 2000  # of each kind, for the in-process CPU figures


def app_cpu(database_url: str, secret_key: str, tokens: list[str]) -> tuple[float, float]:
    """CPU time (µs) of one heartbeat and one /health in the WSGI app itself, in this process,
    without HTTP: 20 alternating turns, so both see the same machine. Less sensitive to other
    users' load than a rate, and the app's own share of the cost."""
    import io

    from altmesh_dashboard import create_app
    from altmesh_dashboard.db import engine_of
    from werkzeug.test import EnvironBuilder

    app = create_app(
        {"SECRET_KEY": secret_key, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    )

    def environ(method: str, path: str, body: bytes, token: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        builder = EnvironBuilder(path=path, method=method, data=body or None, headers=headers)
        return dict(builder.get_environ())

    def call(template: dict[str, Any], body: bytes) -> None:
        statuses: list[str] = []
        answer = app.wsgi_app(
            {**template, "wsgi.input": io.BytesIO(body)},
            lambda status, _headers, _exc=None: statuses.append(status),
        )
        b"".join(answer)
        getattr(answer, "close", lambda: None)()
        if not statuses[0].startswith("200"):
            raise RuntimeError(f"in-process {template['PATH_INFO']}: {statuses[0]}")

    beats = [environ("POST", "/api/v1/relays/heartbeat", HEARTBEAT, t) for t in tokens]
    health = environ("GET", "/health", b"", "")
    for warm in range(50):
        call(beats[warm % len(beats)], HEARTBEAT)
        call(health, b"")
    spent = {"heartbeat": 0.0, "health": 0.0}
    turn = APP_CPU_REQUESTS // 20
    for _ in range(20):
        started = time.process_time()
        for number in range(turn):
            call(beats[number % len(beats)], HEARTBEAT)
        spent["heartbeat"] += time.process_time() - started
        started = time.process_time()
        for _ in range(turn):
            call(health, b"")
        spent["health"] += time.process_time() - started
    engine_of(app).dispose()
    count = 20 * turn
    return spent["heartbeat"] / count * 1e6, spent["health"] / count * 1e6


def measure_noop(directory: Path) -> dict[str, tuple[float, int]]:
    """The no-op WSGI app under the same gunicorn settings and clients, per client mode (the
    packaged config's master checks and migrates a database first: it gets a throwaway one)."""
    url = f"sqlite:///{directory}/noop.sqlite3"
    figures = {}
    with gunicorn(
        url, secrets.token_hex(32), directory / "noop.log", "bench_dashboard:noop_app"
    ) as port:
        for mode in MODES:
            rate(port, "GET", "/", b"", [], mode, 1.0)  # warm-up
            figures[mode] = rate(port, "GET", "/", b"", [], mode)
    return figures


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # bench/run.sh stops a benchmark with SIGTERM: unwind so every finally stops its server.
    print("bench_dashboard: stopped by SIGTERM, stopping its servers", file=sys.stderr)
    raise SystemExit(143)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def worker_setup() -> str:
    from altmesh_dashboard import gunicorn_conf

    workers = WORKERS or str(gunicorn_conf.workers)
    threads = THREADS or str(gunicorn_conf.threads)
    return (
        f"gunicorn {workers} {gunicorn_conf.worker_class} workers x {threads} threads "
        f"(keep-alive {gunicorn_conf.keepalive} s)"
    )


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if not (PG_BIN / "initdb").exists():
        print(f"{PG_BIN / 'initdb'} is missing: install PostgreSQL 15 (make host)", file=sys.stderr)
        return 1
    load_before = load_average()
    rows: list[Row] = []
    cpu_rows: list[CpuRow] = []
    with tempfile.TemporaryDirectory(prefix="altmesh-bench-dashboard.") as directory:
        logs = Path(directory)
        noop = measure_noop(logs)
        measured, cpu = measure(
            "SQLite (WAL)", f"sqlite:///{directory}/bench.sqlite3", logs / "sqlite.log"
        )
        rows += measured
        cpu_rows.append(cpu)
        with postgresql() as url:
            measured, cpu = measure("PostgreSQL 15", url, logs / "postgresql.log")
            rows += measured
            cpu_rows.append(cpu)
    print(
        f"dashboard heartbeats/s: {worker_setup()} on loopback, {CLIENTS} client processes, "
        f"{SECONDS:.0f} s per figure (in {ROUNDS} turns with /health), {RELAYS} relays; "
        f"load average {load_before} at the start, {load_average()} at the end"
    )
    print(
        "no-op WSGI app under the same gunicorn (peer): "
        + ", ".join(f"{noop[mode][0]:.0f}/s ({mode})" for mode in MODES)
    )
    print(
        f"{'database':<16}{'clients':<16}{'heartbeats/s':>14}{'/health/s (peer)':>18}"
        f"{'ratio':>8}{'failed':>8}   goal: >= {GOAL_RATE:.0f}/s, >= {GOAL_RATIO:.0%}"
    )
    for label, mode, heartbeats, health, failures in rows:
        ratio = heartbeats / health if health else 0.0
        print(
            f"{label:<16}{mode:<16}{heartbeats:>14.0f}{health:>18.0f}{ratio:>8.0%}{failures:>8}"
            f"   rate {verdict(heartbeats >= GOAL_RATE)}, ratio {verdict(ratio >= GOAL_RATIO)}"
        )
    print(f"app CPU per request, in one process without HTTP ({APP_CPU_REQUESTS} of each):")
    print(f"{'database':<16}{'heartbeat µs':>14}{'/health µs':>18}{'ratio':>8}")
    for label, beat_cpu, health_cpu in cpu_rows:
        print(f"{label:<16}{beat_cpu:>14.0f}{health_cpu:>18.0f}{health_cpu / beat_cpu:>8.0%}")
    failed = sum(figures[1] for figures in noop.values()) + sum(row[4] for row in rows)
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
