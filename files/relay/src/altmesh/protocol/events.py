"""Events a LinkConnection hands to the application (small, immutable)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class HandshakeComplete:
    """The link is established; the peer proved `remote_static` and its address."""

    remote_static: bytes
    remote_address: ipaddress.IPv6Address
    probe: bool = False  # the initiator only measures this link (HANDSHAKE_FLAG_PROBE)


@dataclass(frozen=True)
class StreamOpened:
    """The peer opened stream `stream_id` towards `destination` (a node address) and `port`.

    `hops_left` is None for an OPEN; for a RELAY_OPEN (sent only between relays) it is how many
    more relay links the stream may cross after this one.
    """

    stream_id: int
    destination: ipaddress.IPv6Address
    port: int
    hops_left: int | None = None


@dataclass(frozen=True)
class StreamData:
    """Bytes arrived on a stream. Call `acknowledge(stream_id, n)` once they are consumed."""

    stream_id: int
    data: bytes


@dataclass(frozen=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data will arrive on it."""

    stream_id: int


@dataclass(frozen=True)
class StreamReset:
    """The stream was aborted, by the peer or by the core (e.g. flow-control violation)."""

    stream_id: int
    code: int
    reason: str


@dataclass(frozen=True)
class StreamWritable:
    """Credit arrived: `send_stream_data` will now accept more bytes on this stream."""

    stream_id: int


@dataclass(frozen=True)
class PongReceived:
    """The answer to our `ping()`: round-trip time in seconds."""

    rtt: float


@dataclass(frozen=True)
class Rekeyed:
    """Both directions of the link now use fresh session keys."""

    initiated_by_us: bool


@dataclass(frozen=True)
class RouteInfoReceived:
    """Opaque routing information from the peer (its meaning belongs to the mesh layer)."""

    payload: bytes


@dataclass(frozen=True)
class SecurityNotice:
    """A non-fatal fault of the peer worth a security event (e.g. a flow-control violation)."""

    kind: str
    detail: str


@dataclass(frozen=True)
class LinkClosed:
    """The peer closed the link cleanly, giving `reason`."""

    reason: str


Event = (
    HandshakeComplete
    | StreamOpened
    | StreamData
    | StreamEnded
    | StreamReset
    | StreamWritable
    | PongReceived
    | Rekeyed
    | RouteInfoReceived
    | SecurityNotice
    | LinkClosed
)
