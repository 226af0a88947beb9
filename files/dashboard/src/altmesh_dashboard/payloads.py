"""Validation of the relay API's JSON bodies. Each check names the field and what is wrong, so a
relay operator can fix the sender from the error alone."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
EVENT_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
LINK_STATES = ("up", "connecting", "down")
SEVERITIES = ("info", "warning", "critical")
MAX_ENDPOINTS = 16
MAX_LINKS = 256
MAX_EVENTS = 500
MAX_EVENT_DETAIL_BYTES = 4096
MAX_COUNTER = 2**63 - 1
RESERVED_NAMES = frozenset({"mesh", "mesh.svg", "tokens"})  # paths under /relays/


class PayloadError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(field, "must be a JSON object")
    return value


def _only(obj: dict[str, Any], field: str, allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        prefix = f"{field}." if field else ""
        raise PayloadError(prefix + unknown[0], "unknown field")


def _required(obj: dict[str, Any], key: str, field: str) -> Any:
    if key not in obj:
        raise PayloadError(field, "is required")
    return obj[key]


def _string(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise PayloadError(field, "must be a string")
    if not value or len(value) > max_length:
        raise PayloadError(field, f"must be 1 to {max_length} characters")
    return value


def _integer(value: Any, field: str, minimum: int = 0, maximum: int = MAX_COUNTER) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(field, "must be a whole number")
    if not minimum <= value <= maximum:
        raise PayloadError(field, f"must be between {minimum} and {maximum}")
    return value


def _number(value: Any, field: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(field, "must be a number")
    if not minimum <= value <= maximum:
        raise PayloadError(field, f"must be between {minimum} and {maximum}")
    return float(value)


def _list(value: Any, field: str, max_items: int, min_items: int = 0) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(field, "must be a list")
    if not min_items <= len(value) <= max_items:
        raise PayloadError(field, f"must hold {min_items} to {max_items} items")
    return value


def relay_name(value: Any, field: str = "name") -> str:
    name = _string(value, field, 63)
    if not LABEL.match(name):
        raise PayloadError(field, "must be one DNS label: lower-case letters, digits and '-'")
    if name in RESERVED_NAMES:
        raise PayloadError(field, f"{name!r} is reserved by the dashboard; choose another name")
    return name


@dataclass(frozen=True)
class Registration:
    name: str
    public_key: str
    address: str
    endpoints: list[dict[str, Any]]


def parse_registration(body: Any, network_prefix: str = "") -> Registration:
    obj = _object(body, "body")
    _only(obj, "", {"name", "public_key", "address", "endpoints"})
    name = relay_name(_required(obj, "name", "name"))
    key_text = _string(_required(obj, "public_key", "public_key"), "public_key", 64)
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("public_key", "must be base64") from None
    if len(key) != 32:
        raise PayloadError("public_key", f"must be a 32-byte X25519 key, got {len(key)} bytes")
    address_text = _string(_required(obj, "address", "address"), "address", 45)
    try:
        address = ipaddress.IPv6Address(address_text)
    except ValueError:
        raise PayloadError("address", f"{address_text!r} is not an IPv6 address") from None
    if network_prefix and address not in ipaddress.IPv6Network(network_prefix):
        raise PayloadError("address", f"must be inside the network's prefix {network_prefix}")
    endpoints = []
    raw_endpoints = _list(
        _required(obj, "endpoints", "endpoints"), "endpoints", MAX_ENDPOINTS, min_items=1
    )
    for index, raw in enumerate(raw_endpoints):
        field = f"endpoints[{index}]"
        endpoint = _object(raw, field)
        _only(endpoint, field, {"host", "port"})
        host = _string(_required(endpoint, "host", f"{field}.host"), f"{field}.host", 253)
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            if not HOSTNAME.match(host):
                raise PayloadError(f"{field}.host", "must be an IP address or host name") from None
        port = _integer(_required(endpoint, "port", f"{field}.port"), f"{field}.port", 1, 65535)
        endpoints.append({"host": host, "port": port})
    return Registration(name, base64.b64encode(key).decode(), str(address), endpoints)


@dataclass(frozen=True)
class LinkReport:
    peer: str
    state: str
    rtt_ms: float | None


@dataclass(frozen=True)
class HeartbeatReport:
    load: float
    active_streams: int
    bytes_in: int
    bytes_out: int
    version: str
    links: list[LinkReport]


def parse_heartbeat(body: Any) -> HeartbeatReport:
    obj = _object(body, "body")
    _only(obj, "", {"load", "active_streams", "bytes_in", "bytes_out", "links", "version"})
    load = _number(_required(obj, "load", "load"), "load", 0.0, 1.0)
    streams = _integer(_required(obj, "active_streams", "active_streams"), "active_streams")
    bytes_in = _integer(_required(obj, "bytes_in", "bytes_in"), "bytes_in")
    bytes_out = _integer(_required(obj, "bytes_out", "bytes_out"), "bytes_out")
    version = _string(_required(obj, "version", "version"), "version", 64)
    links = []
    seen: set[str] = set()
    for index, raw in enumerate(_list(obj.get("links", []), "links", MAX_LINKS)):
        field = f"links[{index}]"
        link = _object(raw, field)
        _only(link, field, {"peer", "state", "rtt_ms"})
        peer = relay_name(_required(link, "peer", f"{field}.peer"), f"{field}.peer")
        if peer in seen:
            raise PayloadError(f"{field}.peer", f"{peer!r} is listed twice")
        seen.add(peer)
        state = _required(link, "state", f"{field}.state")
        if state not in LINK_STATES:
            raise PayloadError(f"{field}.state", f"must be one of {', '.join(LINK_STATES)}")
        rtt = link.get("rtt_ms")
        rtt_ms = None if rtt is None else _number(rtt, f"{field}.rtt_ms", 0.0, 600_000.0)
        links.append(LinkReport(peer, str(state), rtt_ms))
    return HeartbeatReport(load, streams, bytes_in, bytes_out, version, links)


@dataclass(frozen=True)
class EventReport:
    occurred_at: dt.datetime
    kind: str
    severity: str
    peer: str | None
    detail: dict[str, Any]


def _timestamp(value: Any, field: str) -> dt.datetime:
    text = _string(value, field, 40)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(field, "must be an ISO 8601 time such as 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        raise PayloadError(field, "must include a time zone (Z or +00:00)")
    return moment.astimezone(dt.UTC)


def parse_events(body: Any) -> list[EventReport]:
    obj = _object(body, "body")
    _only(obj, "", {"events"})
    events = []
    raw_events = _list(_required(obj, "events", "events"), "events", MAX_EVENTS, min_items=1)
    for index, raw in enumerate(raw_events):
        field = f"events[{index}]"
        event = _object(raw, field)
        _only(event, field, {"time", "kind", "severity", "peer", "detail"})
        occurred_at = _timestamp(_required(event, "time", f"{field}.time"), f"{field}.time")
        kind = _string(_required(event, "kind", f"{field}.kind"), f"{field}.kind", 64)
        if not EVENT_KIND.match(kind):
            raise PayloadError(f"{field}.kind", "must be lower-case letters, digits, '_' or '.'")
        severity = event.get("severity", "warning")
        if severity not in SEVERITIES:
            raise PayloadError(f"{field}.severity", f"must be one of {', '.join(SEVERITIES)}")
        peer = event.get("peer")
        if peer is not None:
            peer = _string(peer, f"{field}.peer", 128)
        detail = _object(event.get("detail", {}), f"{field}.detail")
        if len(json.dumps(detail)) > MAX_EVENT_DETAIL_BYTES:
            raise PayloadError(f"{field}.detail", f"must be at most {MAX_EVENT_DETAIL_BYTES} bytes")
        events.append(EventReport(occurred_at, kind, str(severity), peer, detail))
    return events
