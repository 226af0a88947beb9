"""Prometheus metrics. Counters live in this module; the relays-by-state gauge is read from the
database at scrape time, so every gunicorn worker reports the same truth. With several workers,
set PROMETHEUS_MULTIPROC_DIR (the packaged gunicorn config does) so counters are summed."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import select

NAMESPACE = "altmesh_dashboard"

HEARTBEATS = Counter(
    "heartbeats", "Relay heartbeats received, by result", ["result"], namespace=NAMESPACE
)
REGISTRATIONS = Counter(
    "registrations", "Relay registrations, by result", ["result"], namespace=NAMESPACE
)
SECURITY_EVENTS = Counter(
    "security_events", "Security events received from relays", namespace=NAMESPACE
)
LOGINS = Counter(
    "logins",
    "Login attempts, by result (success, failure, throttled)",
    ["result"],
    namespace=NAMESPACE,
)
DNS_UPDATES = Counter(
    "dns_updates",
    "DNS updates sent to the zone's server, by result",
    ["result"],
    namespace=NAMESPACE,
)
FAILURES = Counter(
    "failures",
    "Requests refused or failed, by kind (relay_auth, bad_payload, csrf, server_error, "
    "dns_publish, forbidden)",
    ["kind"],
    namespace=NAMESPACE,
)


class RelayStateCollector(Collector):
    """`altmesh_dashboard_relays{state}`: relays up, stale or down, by heartbeat age."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        from altmesh_dashboard.db import get_session
        from altmesh_dashboard.models import Relay
        from altmesh_dashboard.status import relay_state

        counts = {"up": 0, "stale": 0, "down": 0}
        now = dt.datetime.now(dt.UTC)
        with self.app.app_context():
            for last_heartbeat in get_session().scalars(select(Relay.last_heartbeat_at)):
                counts[relay_state(last_heartbeat, now, self.app.config)] += 1
        family = GaugeMetricFamily(
            f"{NAMESPACE}_relays", "Relays by state (heartbeat age)", labels=["state"]
        )
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family


def render_metrics(app: Flask) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped __init__
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY)
    state_registry = CollectorRegistry()
    state_registry.register(RelayStateCollector(app))
    return body + generate_latest(state_registry)
