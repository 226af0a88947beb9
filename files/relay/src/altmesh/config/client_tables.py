"""The tables of clients and services: [[relays]], [client] and [service]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from altmesh.config.model import ClientSettings, Forward, HostPort, RelayEndpoint, ServiceSettings
from altmesh.config.relay_tables import parse_dashboard_url
from altmesh.config.table import Table
from altmesh.config.values import (
    DEFAULT_RELAY_PORT,
    parse_alt_name,
    parse_forward,
    parse_host_port,
    parse_port,
    parse_public_key,
    parse_relay_name,
    parse_socks_listen,
    parse_status_page,
)

DEFAULT_SOCKS = HostPort("127.0.0.1", 1080)


def parse_relays(top: Table) -> tuple[RelayEndpoint, ...]:
    given = top.data.get("relays")
    tables = top.array_of_tables("relays")
    if tables is None or given == []:
        top.problem("relays", "at least one [[relays]] with address and public_key is required")
    endpoints = []
    for table in tables or []:
        address = table.parse("address", _relay_address, required=True)
        key = table.parse("public_key", parse_public_key, required=True)
        name = table.parse("name", parse_relay_name)
        table.check_unknown()
        if address is not None and key is not None:
            endpoints.append(RelayEndpoint(address, key, name))
    return tuple(endpoints)


def _relay_address(value: Any, field_name: str) -> HostPort:
    return parse_host_port(value, field_name, DEFAULT_RELAY_PORT)


def parse_client(table: Table | None, state_dir: Path | None) -> ClientSettings:
    """[client]; absent, it means the defaults (SOCKS5 on 127.0.0.1:1080, no forwards)."""
    default_control = (state_dir or Path()) / "control.sock"
    if table is None:
        return ClientSettings(DEFAULT_SOCKS, (), default_control, 0.5, 30.0)
    socks: HostPort | None = DEFAULT_SOCKS
    if table.has("socks_listen"):
        socks = table.parse("socks_listen", parse_socks_listen)
    forwards = tuple(table.items("forwards", parse_forward))
    control = table.path_value("control_socket") or default_control
    low = table.number("reconnect_min_seconds", 0.5, 0.05, 60.0)
    high = table.number("reconnect_max_seconds", 30.0, 0.1, 3600.0)
    if high < low:
        table.problem("reconnect_max_seconds", f"must be >= reconnect_min_seconds ({low:g})")
    probe = table.number("probe_interval_seconds", 0.5, 0.1, 10.0)
    dead = table.number("dead_after_seconds", 2.0, 0.5, 60.0)
    if dead <= probe:
        table.problem("dead_after_seconds", f"must be > probe_interval_seconds ({probe:g})")
    status_page = None
    if table.has("status_page"):
        status_page = table.parse("status_page", parse_status_page)
    settings = ClientSettings(
        socks,
        forwards,
        control,
        low,
        high,
        dns_discovery=table.boolean("dns_discovery", True),
        dns_refresh_seconds=table.number("dns_refresh_seconds", 60.0, 10.0, 86400.0),
        max_candidates=table.integer("max_candidates", 8, 1, 64),
        probe_interval_seconds=probe,
        dead_after_seconds=dead,
        candidate_probe_seconds=table.number("candidate_probe_seconds", 30.0, 1.0, 3600.0),
        switch_margin=table.number("switch_margin", 0.3, 0.05, 0.9),
        switch_after_seconds=table.number("switch_after_seconds", 60.0, 1.0, 3600.0),
        link_wait_seconds=table.number("link_wait_seconds", 3.0, 0.0, 30.0),
        socks_negotiation_timeout_seconds=table.number(
            "socks_negotiation_timeout_seconds", 10.0, 0.5, 300.0
        ),
        socks_max_negotiations=table.integer("socks_max_negotiations", 256, 1, 65536),
        status_page=status_page,
    )
    table.check_unknown()
    return settings


def _port(value: Any, field_name: str) -> int:
    return parse_port(value, field_name)


def parse_service(table: Table) -> ServiceSettings:
    name = table.parse("name", parse_alt_name)
    target = table.parse("target", parse_host_port)
    ports = tuple(table.items("ports", _port))
    url = table.parse("dashboard_url", parse_dashboard_url)
    token_file = table.path_value("token_file")
    ca_file = table.path_value("ca_file")
    if url is not None and token_file is None and not table.has("token_file"):
        table.problem("token_file", "is required with dashboard_url (the service token's file)")
    if token_file is not None and url is None and not table.has("dashboard_url"):
        table.problem("dashboard_url", "is required with token_file (the dashboard's base URL)")
    if ca_file is not None and url is not None and not url.startswith("https://"):
        table.problem("ca_file", "is only used for an https:// dashboard_url")
    table.check_unknown()
    return ServiceSettings(name, target, ports, url, token_file, ca_file)


def forward_port_problems(
    forwards: list[tuple[str, Forward]], socks: HostPort | None
) -> list[tuple[str, str]]:
    """(field, problem) for forwards whose local port is taken by another forward or SOCKS5.

    `forwards` pairs each forward with where it was given (`client.forwards[0]`, `--forward`).
    Forwards listen on 127.0.0.1, so a SOCKS5 server on an IPv4 loopback address of the same
    port would compete for it.
    """
    problems: list[tuple[str, str]] = []
    first: dict[int, str] = {}
    for where, forward in forwards:
        port = forward.local_port
        if port in first:
            problems.append((where, f"local port {port} is also {first[port]}"))
        else:
            first[port] = where
        if socks is not None and socks.port == port and socks.host in ("127.0.0.1", "localhost"):
            problems.append((where, f"local port {port} is also client.socks_listen ({socks})"))
    return problems


def status_page_problems(client: ClientSettings) -> list[str]:
    """Problems of the status page's address against the node's other local listeners."""
    page = client.status_page
    if page is None:
        return []
    ipv4_loopback = ("127.0.0.1", "localhost")
    problems = []
    socks = client.socks_listen
    if (
        socks is not None
        and socks.port == page.port
        and (
            socks.host == page.host or (socks.host in ipv4_loopback and page.host in ipv4_loopback)
        )
    ):
        problems.append(f"port {page.port} is also client.socks_listen ({socks})")
    for forward in client.forwards:
        if forward.local_port == page.port and page.host in ipv4_loopback:
            problems.append(f"port {page.port} is also the forward {forward}")
    return problems
