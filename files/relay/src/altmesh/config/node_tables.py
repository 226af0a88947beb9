"""The tables every node has: [network], [node], [link], [log], and [dns] (clients and relays)."""

from __future__ import annotations

import ipaddress
from typing import Any

from altmesh.config.errors import ConfigError
from altmesh.config.model import (
    DnsSettings,
    HostPort,
    LinkTuning,
    LogConfig,
    NetworkConfig,
    NodeConfig,
)
from altmesh.config.table import Table
from altmesh.config.values import ip_address, parse_host_port, parse_network_name
from altmesh.protocol import constants as C
from altmesh.protocol.address import network_prefix

LOG_LEVELS = ("debug", "info", "warning", "error")
DNS_PORT = 53


def parse_prefix(value: Any, field_name: str) -> ipaddress.IPv6Network:
    """The network's /48; the rule (RFC 4193, /48) is the protocol core's `network_prefix`."""
    if not isinstance(value, str):
        raise ConfigError(field_name, "must be a string like 'fd12:3456:789a::/48'")
    try:
        ipaddress.IPv6Network(value.strip(), strict=True)
    except ValueError:
        raise ConfigError(
            field_name,
            f"{value!r} is not an IPv6 network with its host bits zero, like 'fd12:3456:789a::/48'",
        ) from None
    try:
        return network_prefix(value)
    except ValueError as err:
        raise ConfigError(field_name, str(err)) from None


def parse_network(table: Table) -> NetworkConfig | None:
    name = table.parse("name", parse_network_name, required=True)
    prefix = table.parse("prefix", parse_prefix, required=True)
    table.check_unknown()
    if name is None or prefix is None:
        return None
    return NetworkConfig(name, prefix)


def parse_node(table: Table) -> NodeConfig | None:
    key_file = table.path_value("private_key_file", required=True)
    previous_key = table.path_value("previous_private_key_file")
    state_dir = table.path_value("state_dir", required=True)
    freshness = table.number("handshake_freshness_seconds", C.HANDSHAKE_FRESHNESS, 10.0, 86_400.0)
    table.check_unknown()
    if key_file is None or state_dir is None:
        return None
    if previous_key == key_file:
        table.problem("previous_private_key_file", "is the same file as private_key_file")
    return NodeConfig(key_file, previous_key, state_dir, freshness)


def parse_link(table: Table | None) -> LinkTuning:
    if table is None:
        return LinkTuning()
    link = LinkTuning(
        rekey_after_seconds=table.number("rekey_after_seconds", 120.0, 1.0, 120.0),
        rekey_after_messages=table.integer("rekey_after_messages", 2**28, 16, 2**28),
        reject_after_seconds=table.number("reject_after_seconds", 180.0, 2.0, 180.0),
        keepalive_seconds=table.number("keepalive_seconds", 15.0, 1.0, 3600.0),
        handshake_timeout_seconds=table.number("handshake_timeout_seconds", 10.0, 1.0, 60.0),
        stream_window_bytes=table.integer(
            "stream_window_bytes", C.DEFAULT_STREAM_WINDOW, 1024, C.MAX_STREAM_WINDOW
        ),
        max_streams=table.integer("max_streams", C.DEFAULT_MAX_STREAMS, 1, C.MAX_STREAMS_LIMIT),
        link_window_bytes=table.integer("link_window_bytes", C.DEFAULT_LINK_WINDOW, 2048, 2**40),
    )
    if link.reject_after_seconds <= link.rekey_after_seconds:
        table.problem(
            "reject_after_seconds",
            f"must be greater than rekey_after_seconds ({link.rekey_after_seconds:g})",
        )
    if link.link_window_bytes < 2 * link.stream_window_bytes:
        table.problem(
            "link_window_bytes",
            f"must hold two stream windows (2 x stream_window_bytes = "
            f"{2 * link.stream_window_bytes})",
        )
    table.check_unknown()
    return link


def parse_log(table: Table | None) -> LogConfig:
    if table is None:
        return LogConfig(None)
    level = table.choice("level", "info", LOG_LEVELS)
    log = LogConfig(
        table.path_value("events_file"),
        level,
        aggregate_seconds=table.number("aggregate_seconds", 10.0, 0.1, 3600.0),
        max_events_per_second=table.number("max_events_per_second", 20.0, 0.1, 100_000.0),
        max_events_burst=table.integer("max_events_burst", 200, 1, 1_000_000),
    )
    table.check_unknown()
    return log


def _dns_server(value: Any, field_name: str) -> HostPort:
    server = parse_host_port(value, field_name, DNS_PORT)
    if ip_address(server.host) is None:
        # Finding the DNS server by name would need DNS before DNS is there.
        raise ConfigError(field_name, f"{server.host!r} must be an IP address, not a host name")
    return server


def parse_dns(table: Table) -> DnsSettings | None:
    from altmesh.client.dnssec import TrustAnchorError, parse_trust_anchors

    servers = tuple(table.items("servers", _dns_server, low=1))
    anchors_value = table.get("trust_anchor")
    anchors = [anchors_value] if isinstance(anchors_value, str) else anchors_value
    valid_anchors: tuple[str, ...] = ()
    if anchors is None:
        table.problem("trust_anchor", "is required: the alt. DS or DNSKEY record(s)")
    elif (
        not isinstance(anchors, list) or not anchors or not all(isinstance(a, str) for a in anchors)
    ):
        table.problem(
            "trust_anchor", "must be a string or a list of strings (DS or DNSKEY records)"
        )
    else:
        try:
            parse_trust_anchors(anchors)
            valid_anchors = tuple(anchors)
        except TrustAnchorError as err:
            table.problem("trust_anchor", str(err))
    timeout = table.number("timeout_seconds", 3.0, 0.1, 60.0)
    table.check_unknown()
    if not servers or not valid_anchors:
        return None
    return DnsSettings(servers, valid_anchors, timeout)
