"""The packaged gunicorn configuration migrates a fresh database once, in the arbiter, and then
serves it with several workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from conftest import gunicorn_bind_arguments, listening_socket
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
