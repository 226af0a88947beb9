"""The packaged gunicorn configuration migrates a fresh database once, in the arbiter, and then
serves it with several gthread workers: kept-alive connections, several requests at once per
worker, a database pool that fits the threads."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from conftest import LiveServer, gunicorn_bind_arguments, listening_socket
from gunicorn.config import Config
from sqlalchemy import create_engine, inspect


def test_packaged_config_migrates_once_and_serves_with_two_workers(
    base_config: dict[str, Any], tmp_path: Path
) -> None:
    # No app fixture ran, so on SQLite this database is still empty: gunicorn must migrate it.
    sock = listening_socket()
    bind, url = gunicorn_bind_arguments(sock)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALTMESH_DASHBOARD_")}
    env.update(
        {
            "ALTMESH_DASHBOARD_SECRET_KEY": base_config["SECRET_KEY"],
            "ALTMESH_DASHBOARD_DATABASE_URL": base_config["DATABASE_URL"],
            "WEB_CONCURRENCY": "2",
        }
    )
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
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
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            pass_fds=(sock.fileno(),),
        )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = requests.get(url + "/health", timeout=5).status_code
                break
            except requests.RequestException:
                time.sleep(0.2)
        assert status == 200, log_path.read_text()
        engine = create_engine(base_config["DATABASE_URL"])
        assert "relays" in inspect(engine).get_table_names()
        engine.dispose()
        booted = time.monotonic() + 20  # the first worker may answer before the second is up
        while log_path.read_text().count("Booting worker") < 2 and time.monotonic() < booted:
            time.sleep(0.2)
        log_text = log_path.read_text()
        assert log_text.count("Booting worker") == 2
        assert "Traceback" not in log_text
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        sock.close()


def _host_port(server: LiveServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def test_the_packaged_config_answers_several_requests_on_one_kept_alive_connection(
    live_server: LiveServer,
) -> None:
    connection = http.client.HTTPConnection(*_host_port(live_server), timeout=10)
    try:
        connection.request("GET", "/health")
        first = connection.getresponse()
        first.read()
        kept = connection.sock
        assert kept is not None
        for _ in range(5):
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert response.status == 200
            assert response.read().startswith(b"{")
            assert (response.getheader("Connection") or "").lower() != "close"
            # http.client opens a new socket only when the server closed the last one.
            assert connection.sock is kept
    finally:
        connection.close()


def test_a_client_that_stalls_mid_request_holds_one_thread_not_the_whole_worker(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    """With one worker: a client that sent half a request and then nothing occupies one of its
    threads, and another client is answered at once (a sync worker makes it wait up to
    gunicorn's 30 s timeout). gthread gives such a client no deadline at all, so
    WEB_CONCURRENCY x WEB_THREADS of them stall the dashboard: the operator guide's buffering
    reverse proxy is what keeps them away."""
    from altmesh_dashboard import gunicorn_conf

    assert gunicorn_conf.threads > 1
    server = live_server_factory(workers=1)
    host, port = _host_port(server)
    with socket.create_connection((host, port), timeout=10) as stalled:
        stalled.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no blank line: unfinished
        time.sleep(0.5)  # the worker has taken it
        started = time.monotonic()
        response = requests.get(server.url + "/health", timeout=20)
        waited = time.monotonic() - started
    assert response.status_code == 200
    print(f"answered in {waited:.2f} s beside a stalled request")
    assert waited < 5, f"the second client waited {waited:.1f} s behind a stalled one"


def test_the_master_raises_the_database_pool_to_the_worker_thread_count(
    base_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from altmesh_dashboard import gunicorn_conf

    monkeypatch.setenv("ALTMESH_DASHBOARD_SECRET_KEY", base_config["SECRET_KEY"])
    monkeypatch.setenv("ALTMESH_DASHBOARD_DATABASE_URL", base_config["DATABASE_URL"])
    monkeypatch.setenv("ALTMESH_DASHBOARD_AUTO_MIGRATE", "false")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    config = Config()
    config.set("threads", 12)  # as `--threads 12` would
    monkeypatch.setenv("ALTMESH_DASHBOARD_DATABASE_POOL_SIZE", "3")
    gunicorn_conf.on_starting(SimpleNamespace(cfg=config))
    assert os.environ["ALTMESH_DASHBOARD_DATABASE_POOL_SIZE"] == "12"
    monkeypatch.setenv("ALTMESH_DASHBOARD_DATABASE_POOL_SIZE", "20")
    gunicorn_conf.on_starting(SimpleNamespace(cfg=config))
    assert os.environ["ALTMESH_DASHBOARD_DATABASE_POOL_SIZE"] == "20"  # a larger pool is kept


@pytest.mark.parametrize("variable", ["WEB_CONCURRENCY", "WEB_THREADS"])
def test_a_bad_worker_or_thread_count_stops_gunicorn_naming_the_variable(variable: str) -> None:
    env = {**os.environ, variable: "several"}
    result = subprocess.run(
        [sys.executable, "-c", "import altmesh_dashboard.gunicorn_conf"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{variable}: expected a whole number >= 1, got 'several'" in result.stderr


def test_the_packaged_config_runs_gthread_workers_one_per_cpu_with_four_threads() -> None:
    code = (
        "import os; from altmesh_dashboard import gunicorn_conf as c; "
        "print(c.worker_class, c.workers, c.threads, c.keepalive, len(os.sched_getaffinity(0)))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "WEB_THREADS")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    worker_class, workers, threads, keepalive, cpus = result.stdout.split()
    assert (worker_class, workers, threads, keepalive) == ("gthread", cpus, "4", "5")
