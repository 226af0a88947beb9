"""What a relay sends the dashboard (docs/dashboard-api.md), built from its own state: the
registration, the heartbeat's load, links and attached nodes, security events from the events
file's records, and batches of queued events. Pure functions; `altmesh.relay.reporting` sends
them.

The limits are copies of the dashboard's (`altmesh_dashboard.payloads`, a distribution relays do
not install); tests/apps/test_reporting_pins_dashboard_rules.py pins them together.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import json
import re
import unicodedata
from typing import Any

from altmesh import events as ev
from altmesh.config import Config, HostPort
from altmesh.dnsrecords import RELAY_NAME_PATTERN
from altmesh.eventqueue import EventQueue, QueuedEvent
from altmesh.keyfile import decode_public_key, encode_public_key
from altmesh.protocol import node_address

# A batch's body stays under half the dashboard's default API_MAX_BODY_BYTES (512 KiB); a 413
# halves the number of events per batch until one fits.
MAX_BATCH_BYTES = 256 * 1024
# The dashboard's limits on a heartbeat (docs/dashboard-api.md).
MAX_LINKS = 256
MAX_ATTACHED = 10_000
MAX_RTT_MS = 600_000.0
MAX_PEER_CHARS = 128
MAX_DETAIL_BYTES = 4000  # the dashboard takes 4096 bytes of JSON
RELAY_NAME = re.compile(RELAY_NAME_PATTERN)
EVENT_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")

# The dashboard's severity of each event; anything else is "warning".
SEVERITY = {
    ev.REKEY: "info",
    ev.KEY_ROTATION: "info",
    ev.HANDSHAKE_REPLAYED: "critical",
    ev.DECRYPTION_FAILED: "critical",
    ev.E2E_TRUNCATED: "critical",
    ev.STATE_UNAVAILABLE: "critical",
}


def _text(value: Any) -> str:
    """Storable text: no NUL, no lone surrogate (both refused by the dashboard)."""
    return str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _plain_text(value: Any, limit: int) -> str:
    """Text without control characters (e.g. `peer`), at most `limit` characters."""
    text = "".join(ch for ch in _text(value) if unicodedata.category(ch) != "Cc")
    return text[:limit]


def event_body(record: dict[str, Any]) -> dict[str, Any]:
    """A security log record (docs/security-events.md) as the dashboard's event (without its
    id): `kind` is the event's name, `peer` its `peer`, and `detail` every other field
    (`reason`, `count`, `interval`, `peer_key`, `detail`, ...), cut to fit 4 KB."""
    kind = str(record.get("event", ""))
    if not EVENT_KIND.match(kind):
        kind = "unknown"
    body: dict[str, Any] = {
        "time": str(record.get("time") or _now_text()),
        "kind": kind,
        "severity": SEVERITY.get(kind, "warning"),
    }
    peer = record.get("peer")
    if peer:
        text = _plain_text(peer, MAX_PEER_CHARS)
        if text:
            body["peer"] = text
    detail: dict[str, Any] = {}
    for name, value in record.items():
        if name in ("time", "event", "node", "peer") or value is None:
            continue
        if isinstance(value, bool | int):
            detail[_text(name)] = value
        elif isinstance(value, float):
            detail[_text(name)] = value if value == value and abs(value) != float("inf") else 0
        else:
            detail[_text(name)] = _text(value)
    body["detail"] = _fit(detail)
    return body


def _fit(detail: dict[str, Any]) -> dict[str, Any]:
    """Cut the longest text values until the detail is at most MAX_DETAIL_BYTES as JSON."""
    while len(json.dumps(detail, separators=(",", ":")).encode()) > MAX_DETAIL_BYTES:
        texts = [(len(v), k) for k, v in detail.items() if isinstance(v, str) and v]
        if not texts:
            return {"reason": str(detail.get("reason", ""))[:200]}
        _length, key = max(texts)
        value = detail[key]
        detail[key] = value[: len(value) // 2] + "..." if len(value) > 8 else ""
    return detail


def dropped_event(count: int) -> dict[str, Any]:
    """The event that reports events dropped from the full queue (queued like any other)."""
    return {
        "time": _now_text(),
        "kind": ev.EVENTS_DROPPED,
        "severity": "warning",
        "detail": {
            "reason": "queue_full",
            "count": count,
            "detail": "security events dropped, oldest first, from the relay's on-disk queue "
            "while the dashboard did not take them (dashboard.event_queue_max)",
        },
    }


def registration(
    config: Config, public_key: bytes, advertise: tuple[HostPort, ...]
) -> dict[str, Any]:
    """The body of POST /relays/register."""
    settings = config.relay
    assert settings is not None and settings.name is not None
    return {
        "name": settings.name,
        "public_key": encode_public_key(public_key),
        "address": str(node_address(config.network.prefix, public_key)),
        "endpoints": [{"host": a.host, "port": a.port} for a in advertise],
    }


def relay_load(
    cpu_fraction: float, links: float, max_links: int, buffered: float, max_buffered: int
) -> float:
    """The heartbeat's load in [0, 1]: the largest of the CPU fraction, the links over
    `max_links` and the buffered bytes over `max_buffered` (why these: the docstring of
    altmesh.relay.reporting, and docs/relay-config.md)."""
    fractions = (cpu_fraction, links / max(1, max_links), buffered / max(1, max_buffered))
    return round(min(1.0, max(0.0, *fractions)), 4)


def links_report(mesh_links: list[Any]) -> list[dict[str, Any]]:
    """`links`: each peer once, with a name the dashboard takes, at most MAX_LINKS."""
    report: list[dict[str, Any]] = []
    seen: set[str] = set()
    for status in mesh_links:
        name = str(getattr(status, "peer_name", ""))
        state = str(getattr(status, "state", ""))
        if name in seen or not RELAY_NAME.match(name) or state not in ("up", "connecting", "down"):
            continue
        seen.add(name)
        rtt = getattr(status, "rtt_ms", None)
        if isinstance(rtt, int | float) and rtt == rtt:
            rtt = round(min(max(float(rtt), 0.0), MAX_RTT_MS), 3)
        else:
            rtt = None
        report.append({"peer": name, "state": state, "rtt_ms": rtt})
        if len(report) >= MAX_LINKS:
            break
    return report


def attached_report(
    attached: list[ipaddress.IPv6Address], mesh_links: list[Any], prefix: ipaddress.IPv6Network
) -> list[str]:
    """`attached`: the clients and services attached here (not the mesh's relays)."""
    relays: set[ipaddress.IPv6Address] = set()
    for status in mesh_links:
        key = getattr(status, "public_key", "")
        if key:
            with contextlib.suppress(ValueError):
                relays.add(node_address(prefix, decode_public_key(key)))
    return [str(a) for a in attached if a not in relays][:MAX_ATTACHED]


def take_batch(
    queue: EventQueue, limit: int, max_bytes: int = MAX_BATCH_BYTES
) -> list[QueuedEvent]:
    """The oldest queued events, at most `limit` of them and `max_bytes` of JSON (but one at
    least, so an event larger than `max_bytes` still goes, alone)."""
    batch = queue.peek(limit)
    size = 0
    for index, event in enumerate(batch):
        size += len(json.dumps(event.payload(), separators=(",", ":"))) + 1
        if size > max_bytes and index > 0:
            return batch[:index]
    return batch


def _now_text() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
