"""gunicorn settings for the dashboard:

    gunicorn -c python:altmesh_dashboard.gunicorn_conf -b 127.0.0.1:8000 altmesh_dashboard.wsgi:app

The arbiter validates the configuration and applies migrations once, before any worker starts
(workers migrating at the same moment would race), then tells the workers not to migrate. With
PROMETHEUS_MULTIPROC_DIR set, counters of all workers are summed and a dead worker's are kept."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
accesslog = "-"
errorlog = "-"


def on_starting(server: Any) -> None:
    from altmesh_dashboard.app import create_app
    from altmesh_dashboard.config import ConfigError
    from altmesh_dashboard.db import engine_of

    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        for stale in Path(multiproc_dir).glob("*.db"):
            stale.unlink()  # counters of a previous run
    try:
        app = create_app({"AUTO_MIGRATE": True})
    except ConfigError as error:
        print(f"altmesh-dashboard: {error.message}", file=sys.stderr)
        sys.exit(3)
    engine_of(app).dispose()
    os.environ["ALTMESH_DASHBOARD_AUTO_MIGRATE"] = "false"


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
