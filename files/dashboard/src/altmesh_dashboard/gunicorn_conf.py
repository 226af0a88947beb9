"""gunicorn settings for the dashboard:

    gunicorn -c python:altmesh_dashboard.gunicorn_conf -b 127.0.0.1:8000 altmesh_dashboard.wsgi:app

The arbiter validates the configuration and applies migrations once, before any worker starts
(workers migrating at the same moment would race), then tells the workers not to migrate. With
PROMETHEUS_MULTIPROC_DIR set, counters of all workers are summed and a dead worker's are kept.

Workers are gthread workers: each serves WEB_THREADS requests at once (default 4) and keeps an
idle connection open for `keepalive` seconds, so a client (a relay's HTTP client, a reverse
proxy) can send its next request on the same connection. Sync workers answered one connection
at a time and closed it after every answer (on this project's 2-CPU benchmark host, in one run,
/health answered 843/s under 2 sync workers and 1106/s under 2 gthread workers). There are
WEB_CONCURRENCY workers (default: one per CPU this process may run on). Each thread holds one
database connection while it answers, so the master raises DATABASE_POOL_SIZE to the thread
count if it is lower."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def _cpus() -> int:
    """The CPUs this process may run on (a container or `taskset` may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _whole_number(variable: str, default: int) -> int:
    """A positive whole number from the environment, or stop with a message naming it."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(
            f"altmesh-dashboard: {variable}: expected a whole number >= 1, got {raw!r}"
        )
    return value


workers = _whole_number("WEB_CONCURRENCY", _cpus())
worker_class = "gthread"
threads = _whole_number("WEB_THREADS", 4)
keepalive = 5  # seconds an idle kept-alive connection stays open (gunicorn's default: 2)
accesslog = "-"
errorlog = "-"
# gunicorn 25.1+ opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or
# ~/.gunicorn/gunicorn.ctl by default: two dashboards (or a dashboard and any other gunicorn) of
# one user would share it, and one could stop or reconfigure the other. The dashboard needs no
# control socket (systemd signals the master), so it has none.
control_socket_disable = True


def on_starting(server: Any) -> None:
    from altmesh_dashboard.app import create_app
    from altmesh_dashboard.config import StartupError
    from altmesh_dashboard.db import engine_of

    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        for stale in Path(multiproc_dir).glob("*.db"):
            stale.unlink()  # counters of a previous run
    try:
        app = create_app({"AUTO_MIGRATE": True})
    except StartupError as error:
        print(f"altmesh-dashboard: {error.message}", file=sys.stderr)
        sys.exit(3)
    engine_of(app).dispose()
    os.environ["ALTMESH_DASHBOARD_AUTO_MIGRATE"] = "false"
    # --threads on the command line overrides the `threads` above: use what gunicorn will run.
    pool_size = max(int(app.config["DATABASE_POOL_SIZE"]), int(server.cfg.threads))
    os.environ["ALTMESH_DASHBOARD_DATABASE_POOL_SIZE"] = str(pool_size)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
