"""Prometheus metrics of a node, served on a local port by prometheus_client."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from altmesh.config import HostPort


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
        self.bytes = Counter(
            "altmesh_stream_bytes", "Stream payload bytes", ["direction"], registry=r
        )
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
        self.bytes_in = self.bytes.labels("in")
        self.bytes_out = self.bytes.labels("out")

    def serve(self, listen: HostPort) -> object:
        """Start the HTTP exporter thread; returns the server (call .shutdown() to stop it)."""
        server, _thread = start_http_server(listen.port, addr=listen.host, registry=self.registry)
        return server
