"""The typed, validated configuration of a node: one frozen dataclass per table of the file."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from altmesh.protocol import LinkConfig
from altmesh.protocol import constants as C

ROLES = ("relay", "client", "service")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    prefix: ipaddress.IPv6Network


@dataclass(frozen=True)
class LinkTuning:
    rekey_after_seconds: float = 120.0
    rekey_after_messages: int = 2**28
    reject_after_seconds: float = 180.0
    keepalive_seconds: float = 15.0
    handshake_timeout_seconds: float = 10.0
    stream_window_bytes: int = C.DEFAULT_STREAM_WINDOW
    max_streams: int = C.DEFAULT_MAX_STREAMS
    link_window_bytes: int = C.DEFAULT_LINK_WINDOW


@dataclass(frozen=True)
class NodeConfig:
    private_key_file: Path
    previous_private_key_file: Path | None
    state_dir: Path
    handshake_freshness_seconds: float = C.HANDSHAKE_FRESHNESS


@dataclass(frozen=True)
class LogConfig:
    events_file: Path | None  # None: security events go to stderr
    level: str = "info"
    aggregate_seconds: float = 10.0
    max_events_per_second: float = 20.0
    max_events_burst: int = 200


@dataclass(frozen=True)
class RelaySettings:
    listen: HostPort
    metrics_listen: HostPort | None
    policy: str  # "open" or "allowlist"
    allowed_keys: tuple[str, ...]
    allowed_keys_file: Path | None
    handshake_rate: float
    handshake_burst: int
    drain_seconds: float
    max_links: int
    forwarded_capture_file: Path | None = None
    max_pending_handshakes: int = 2048
    max_pending_handshakes_per_source: int = 64
    max_buffered_bytes: int = 256 * 1024 * 1024
    name: str | None = None  # one DNS label; required with [mesh] or [dashboard]
    advertise: tuple[HostPort, ...] = ()  # where peers and clients reach this relay


@dataclass(frozen=True)
class MeshPeer:
    name: str
    public_key: str
    previous_public_key: str | None
    endpoints: tuple[HostPort, ...]


@dataclass(frozen=True)
class MeshSettings:
    dns_discovery: bool
    dns_refresh_seconds: float
    probe_interval_seconds: float
    dead_after_seconds: float
    reconnect_min_seconds: float
    reconnect_max_seconds: float
    hop_limit: int
    peers: tuple[MeshPeer, ...]


@dataclass(frozen=True)
class DashboardSettings:
    url: str
    token_file: Path
    ca_file: Path | None
    timeout_seconds: float
    heartbeat_seconds: float  # 0: the interval the dashboard answers with
    event_queue_max: int
    event_batch_max: int


@dataclass(frozen=True)
class RelayEndpoint:
    address: HostPort
    public_key: str
    name: str | None = None  # the relay's name (its DNS-SD instance label), shown in status


@dataclass(frozen=True)
class DnsSettings:
    servers: tuple[HostPort, ...]
    trust_anchors: tuple[str, ...]
    timeout_seconds: float = 3.0


@dataclass(frozen=True)
class Forward:
    local_port: int
    name: str
    port: int

    def __str__(self) -> str:
        return f"{self.local_port}:{self.name}:{self.port}"


@dataclass(frozen=True)
class ClientSettings:
    socks_listen: HostPort | None
    forwards: tuple[Forward, ...]
    control_socket: Path
    reconnect_min_seconds: float
    reconnect_max_seconds: float
    # Finding and choosing relays (docs/client-config.md, "Relays: discovery and failover").
    dns_discovery: bool = True  # read the DNS-SD relay set (needs [dns])
    dns_refresh_seconds: float = 60.0
    max_candidates: int = 8
    probe_interval_seconds: float = 0.5  # PING on the link to the current relay
    dead_after_seconds: float = 2.0  # nothing heard for this long: the relay is dead
    candidate_probe_seconds: float = 30.0  # a short probe link to each other candidate
    switch_margin: float = 0.3
    switch_after_seconds: float = 60.0
    link_wait_seconds: float = 3.0  # a new stream waits this long for a link, then fails
    # SOCKS5 hardening: greeting and request within the timeout, at most so many at once.
    socks_negotiation_timeout_seconds: float = 10.0
    socks_max_negotiations: int = 256
    status_page: HostPort | None = None  # None: off


@dataclass(frozen=True)
class ServiceSettings:
    name: str | None
    target: HostPort | None
    ports: tuple[int, ...]  # empty: every port reaches the target
    # Publishing through the dashboard (altmesh.client.publish): both or neither.
    dashboard_url: str | None = None
    token_file: Path | None = None  # a service token of the dashboard, mode 600
    ca_file: Path | None = None  # CA bundle for an https:// dashboard_url


@dataclass(frozen=True)
class Config:
    source: Path
    role: str
    network: NetworkConfig
    node: NodeConfig
    link: LinkTuning
    log: LogConfig
    relay: RelaySettings | None = None
    relays: tuple[RelayEndpoint, ...] = ()
    dns: DnsSettings | None = None
    client: ClientSettings | None = None
    service: ServiceSettings | None = None
    mesh: MeshSettings | None = None
    dashboard: DashboardSettings | None = None

    def link_config(self) -> LinkConfig:
        """The protocol core's settings for every link this node makes or accepts."""
        return LinkConfig(
            network=self.network.name,
            prefix=self.network.prefix,
            rekey_after_time=self.link.rekey_after_seconds,
            rekey_after_messages=self.link.rekey_after_messages,
            reject_after_time=self.link.reject_after_seconds,
            keepalive_interval=self.link.keepalive_seconds,
            handshake_timeout=self.link.handshake_timeout_seconds,
            stream_window=self.link.stream_window_bytes,
            max_streams=self.link.max_streams,
            link_window=self.link.link_window_bytes,
        )
