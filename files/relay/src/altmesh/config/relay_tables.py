"""The relay's tables: [relay], [mesh] with [[mesh.peers]], and [dashboard]."""

from __future__ import annotations

import urllib.parse
from typing import Any

from altmesh.config.errors import ConfigError
from altmesh.config.model import (
    DashboardSettings,
    DnsSettings,
    HostPort,
    MeshPeer,
    MeshSettings,
    RelaySettings,
)
from altmesh.config.table import Table
from altmesh.config.values import (
    DEFAULT_RELAY_PORT,
    is_wildcard,
    parse_host_port,
    parse_listen,
    parse_public_key,
    parse_relay_name,
    same_socket,
)

POLICIES = ("open", "allowlist")
MAX_ENDPOINTS = 16  # advertise and mesh.peers[].endpoints


def _relay_endpoint(value: Any, field_name: str) -> HostPort:
    """Where a relay is reached from elsewhere: HOST:PORT, never a wildcard address."""
    address = parse_host_port(value, field_name, DEFAULT_RELAY_PORT)
    if is_wildcard(address.host):
        raise ConfigError(
            field_name, f"{address.host!r} means 'every address'; give one peers can reach"
        )
    return address


def _listen(value: Any, field_name: str) -> HostPort:
    return parse_listen(value, field_name, DEFAULT_RELAY_PORT)


def _metrics_listen(value: Any, field_name: str) -> HostPort | None:
    return None if value == "off" else parse_listen(value, field_name)


def parse_relay(table: Table) -> RelaySettings | None:
    listen = table.parse("listen", _listen)
    if table.has("metrics_listen"):
        metrics = table.parse("metrics_listen", _metrics_listen)
    else:
        metrics = HostPort("127.0.0.1", 9400)
    policy = table.choice("policy", "open", POLICIES)
    keys = tuple(table.items("allowed_keys", parse_public_key))
    keys_file = table.path_value("allowed_keys_file")
    if policy == "allowlist" and not table.data.get("allowed_keys") and keys_file is None:
        table.problem("allowed_keys", "policy 'allowlist' needs allowed_keys or allowed_keys_file")
    name = table.parse("name", parse_relay_name)
    advertise = tuple(table.items("advertise", _relay_endpoint, high=MAX_ENDPOINTS))
    listen = listen or HostPort("0.0.0.0", DEFAULT_RELAY_PORT)
    if not table.has("advertise") and not is_wildcard(listen.host):
        advertise = (listen,)  # peers reach this relay where it listens
    settings = RelaySettings(
        listen=listen,
        metrics_listen=metrics,
        policy=policy,
        allowed_keys=keys,
        allowed_keys_file=keys_file,
        handshake_rate=table.number("handshake_rate", 20.0, 0.1, 1_000_000.0),
        handshake_burst=table.integer("handshake_burst", 40, 1, 1_000_000),
        drain_seconds=table.number("drain_seconds", 10.0, 0.0, 3600.0),
        max_links=table.integer("max_links", 10_000, 1, 1_000_000),
        forwarded_capture_file=table.path_value("forwarded_capture_file"),
        max_pending_handshakes=table.integer("max_pending_handshakes", 2048, 1, 1_000_000),
        max_pending_handshakes_per_source=table.integer(
            "max_pending_handshakes_per_source", 64, 1, 1_000_000
        ),
        max_buffered_bytes=table.integer("max_buffered_bytes", 256 * 2**20, 2**20, 2**40),
        name=name,
        advertise=advertise,
    )
    if metrics is not None and same_socket(listen, metrics):
        table.problem("metrics_listen", f"{metrics} is also relay.listen ({listen})")
    table.check_unknown()
    return settings


def parse_mesh(table: Table, dns: DnsSettings | None, dns_given: bool) -> MeshSettings:
    discovery = table.boolean("dns_discovery", dns_given)
    if discovery and not dns_given:
        table.problem("dns_discovery", "needs a [dns] table (servers, trust_anchor) to read DNS")
    probe = table.number("probe_interval_seconds", 0.5, 0.1, 60.0)
    dead = table.number("dead_after_seconds", 2.0, 0.5, 600.0)
    if dead <= probe:
        table.problem(
            "dead_after_seconds", f"must be greater than probe_interval_seconds ({probe:g})"
        )
    low = table.number("reconnect_min_seconds", 0.5, 0.05, 60.0)
    high = table.number("reconnect_max_seconds", 30.0, 0.1, 3600.0)
    if high < low:
        table.problem("reconnect_max_seconds", f"must be >= reconnect_min_seconds ({low:g})")
    settings = MeshSettings(
        dns_discovery=discovery and dns is not None,
        dns_refresh_seconds=table.number("dns_refresh_seconds", 30.0, 5.0, 3600.0),
        probe_interval_seconds=probe,
        dead_after_seconds=dead,
        reconnect_min_seconds=low,
        reconnect_max_seconds=high,
        hop_limit=table.integer("hop_limit", 16, 1, 64),
        peers=_parse_peers(table),
    )
    table.check_unknown()
    return settings


def _parse_peers(mesh: Table) -> tuple[MeshPeer, ...]:
    peers: list[MeshPeer] = []
    names: dict[str, str] = {}
    keys: dict[str, str] = {}
    for table in mesh.array_of_tables("peers") or []:
        name = table.parse("name", parse_relay_name, required=True)
        public_key = table.parse("public_key", parse_public_key, required=True)
        previous = table.parse("previous_public_key", parse_public_key)
        endpoints = tuple(table.items("endpoints", _relay_endpoint, low=1, high=MAX_ENDPOINTS))
        table.check_unknown()
        if name is not None:
            if name in names:
                table.problem("name", f"{name!r} is also {names[name]}")
            names.setdefault(name, table.name("name"))
        for key_field, key in (("public_key", public_key), ("previous_public_key", previous)):
            if key is None:
                continue
            if key in keys:
                table.problem(key_field, f"this key is also {keys[key]}")
            keys.setdefault(key, table.name(key_field))
        if name is not None and public_key is not None and endpoints:
            peers.append(MeshPeer(name, public_key, previous, endpoints))
    return tuple(peers)


def parse_dashboard_url(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field_name, "must be a URL like 'https://dashboard.example:8443'")
    text = value.strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(field_name, f"{text!r} must start with https:// or http://")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ConfigError(field_name, f"{text!r} must not have a query (?) or fragment (#)")
    if "@" in parts.netloc:
        raise ConfigError(field_name, f"{text!r}: no user or password in the URL (use token_file)")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(field_name, f"{text!r}: the port is not a number 1..65535") from None
    if not parts.hostname or port == 0:
        raise ConfigError(field_name, f"{text!r} has no host (or port 0)")
    return text.rstrip("/")


def parse_dashboard(table: Table) -> DashboardSettings | None:
    url = table.parse("url", parse_dashboard_url, required=True)
    token_file = table.path_value("token_file", required=True)
    ca_file = table.path_value("ca_file")
    if ca_file is not None and url is not None and not url.startswith("https://"):
        table.problem("ca_file", "is only used for an https:// url")
    heartbeat = table.number("heartbeat_seconds", 0.0, 0.0, 3600.0)
    if 0 < heartbeat < 1:
        table.problem("heartbeat_seconds", f"{heartbeat:g} is below 1 (0 means: the dashboard's)")
    queue_max = table.integer("event_queue_max", 10_000, 100, 10_000_000)
    batch_max = table.integer("event_batch_max", 500, 1, 500)
    if batch_max > queue_max:
        table.problem("event_batch_max", f"must not exceed event_queue_max ({queue_max})")
    settings = DashboardSettings(
        url=url or "",
        token_file=token_file or table.base,
        ca_file=ca_file,
        timeout_seconds=table.number("timeout_seconds", 5.0, 0.5, 60.0),
        heartbeat_seconds=heartbeat,
        event_queue_max=queue_max,
        event_batch_max=batch_max,
    )
    table.check_unknown()
    return settings if url is not None and token_file is not None else None
