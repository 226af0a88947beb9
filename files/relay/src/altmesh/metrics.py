"""Prometheus metrics of a node, served on a local port by prometheus_client.

Most metrics are prometheus_client's own objects. The ones counted for every forwarded record
(the stream bytes) are plain integers that the forwarding code adds to, exported when the
registry is collected (a scrape, or `get_sample_value`) by `_StreamBytes`: a prometheus_client
`Counter.inc` takes a lock and some five Python calls, once per record and direction on the
relay's hot path. The exported names, labels, types and `_created` samples are the same as a
`Counter` would give.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric

from altmesh.config import HostPort


class _StreamBytes:
    """`altmesh_stream_bytes_total{direction}` from the two integers of NodeMetrics."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics
        self._created = time.time()

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "altmesh_stream_bytes", "Stream payload bytes", labels=["direction"]
        )

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "altmesh_stream_bytes", "Stream payload bytes", labels=["direction"]
        )
        metrics = self._metrics
        family.add_metric(["in"], float(metrics.stream_bytes_in), created=self._created)
        family.add_metric(["out"], float(metrics.stream_bytes_out), created=self._created)
        yield family


class NodeMetrics:
    """Every metric of a relay or client, in a registry of its own (not the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.links = Gauge("altmesh_links", "Established links", registry=r)
        self.streams = Gauge("altmesh_streams", "Open streams", registry=r)
        self.streams_opened = Counter(
            "altmesh_streams_opened", "Streams opened (routed)", registry=r
        )
        # Stream payload bytes, counted on the hot path as plain integers (see the docstring).
        self.stream_bytes_in = 0
        self.stream_bytes_out = 0
        r.register(_StreamBytes(self))
        self.handshakes = Counter(
            "altmesh_handshakes", "Link handshakes by result", ["result"], registry=r
        )
        self.rejections = Counter(
            "altmesh_rejections", "Links or streams refused, by reason", ["reason"], registry=r
        )
        self.rekeys = Counter("altmesh_rekeys", "Completed session rekeys", registry=r)
        self.security_events = Counter(
            "altmesh_security_events", "Security events logged", ["event"], registry=r
        )
        # The relay's mesh: its links to other relays and what the routing engine knows.
        self.mesh_link_up = Gauge(
            "altmesh_mesh_link_up", "1 while the link to a mesh peer is up", ["peer"], registry=r
        )
        self.mesh_link_rtt = Gauge(
            "altmesh_mesh_link_rtt_seconds",
            "Last round-trip time of the link to a mesh peer",
            ["peer"],
            registry=r,
        )
        self.mesh_link_routed = Gauge(
            "altmesh_mesh_link_routed",
            "1 while the routing engine reaches a mesh peer over its direct link",
            ["peer"],
            registry=r,
        )
        self.mesh_links_established = Counter(
            "altmesh_mesh_links_established",
            "Links to a mesh peer that came up",
            ["peer"],
            registry=r,
        )
        self.mesh_links_dead = Counter(
            "altmesh_mesh_links_dead",
            "Links to a mesh peer aborted because nothing arrived for dead_after_seconds",
            ["peer"],
            registry=r,
        )
        self.route_relays = Gauge(
            "altmesh_route_reachable_relays", "Relays the routing engine can reach", registry=r
        )
        self.route_destinations = Gauge(
            "altmesh_route_destinations",
            "Addresses with a route (this relay's included)",
            registry=r,
        )
        self.security_events_dropped = Counter(
            "altmesh_security_events_dropped",
            "Security event occurrences not logged (the log's global bound)",
            ["event"],
            registry=r,
        )
        self.security_events_unwritten = Counter(
            "altmesh_security_events_unwritten",
            "Security event lines the events file refused (written to stderr instead)",
            registry=r,
        )
        self.state_write_failures = Counter(
            "altmesh_state_write_failures",
            "Writes to the state database that failed (disk full, I/O error)",
            registry=r,
        )
        self.buffered_bytes = Gauge(
            "altmesh_forward_buffered_bytes",
            "Stream bytes waiting in the relay for slow receivers (all routes)",
            registry=r,
        )
        self.pending_handshakes = Gauge(
            "altmesh_pending_handshakes",
            "Connections accepted whose handshake is not complete",
            registry=r,
        )
        self.work_pauses = Counter(
            "altmesh_link_work_pauses",
            "Times a link was not read for a while: it used up its work budget",
            registry=r,
        )

    def event_log_hooks(self) -> dict[str, Any]:
        """The SecurityEventLog hooks that feed these metrics."""
        return {
            "on_event": lambda name, _reason: self.security_events.labels(name).inc(),
            "on_dropped": lambda name, n: self.security_events_dropped.labels(name).inc(n),
            "on_unwritten": self.security_events_unwritten.inc,
        }

    def serve(self, listen: HostPort) -> object:
        """Start the HTTP exporter thread; returns the server (call .shutdown() to stop it)."""
        server, _thread = start_http_server(listen.port, addr=listen.host, registry=self.registry)
        return server
