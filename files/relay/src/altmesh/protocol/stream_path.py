"""The STREAM_PATH message: a relay tells the node that opened a stream which relays carry it.

ROUTE_INFO records carry payloads that start with a version byte and a type byte
(docs/protocol.md section 6.2). Between relays they carry the routing engine's announcements
(type 1, docs/routing.md); from a relay to a node they carry STREAM_PATH (type 2): the first
relay of a stream sends it on the node's link as soon as it has forwarded the node's OPEN.

    version (1) = 1 · type (1) = 2 · stream_id (4) · count (1, 1..255) · hop * count
    hop = public key (32) · name_length (1, 0..63) · name (name_length bytes, ASCII)

The hops are the relays of the path in order, the first relay first. A name is the relay's
`[relay] name` (empty when the first relay does not know it); the key is what identifies it.
`decode_stream_path` checks every length and raises MalformedRouteInfo, nothing else.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from altmesh.protocol.constants import (
    KEY_LEN,
    MAX_ROUTE_INFO_LEN,
    ROUTE_INFO_VERSION,
    RouteInfoType,
)
from altmesh.protocol.errors import InvalidArgument, MalformedRouteInfo
from altmesh.protocol.keys import encode_key

MAX_PATH_HOPS = 255
MAX_RELAY_NAME_LEN = 63
_HEAD = struct.Struct(">BBIB")
_NAME = re.compile(rb"^[a-z0-9-]*$")


@dataclass(frozen=True, slots=True)
class PathHop:
    """One relay of a stream's path."""

    public_key: bytes
    name: str  # "" when the relay that sent the path did not know it


@dataclass(frozen=True, slots=True)
class StreamPath:
    """The relays that carry stream `stream_id` of the link the message arrived on."""

    stream_id: int
    hops: tuple[PathHop, ...]

    def names(self) -> tuple[str, ...]:
        """A label per hop: its name, or the start of its base64 key when it has none."""
        return tuple(hop.name or encode_key(hop.public_key)[:8] for hop in self.hops)


def route_info_type(payload: bytes) -> int | None:
    """The type of a ROUTE_INFO payload of the version this node speaks, else None."""
    if len(payload) < 2 or payload[0] != ROUTE_INFO_VERSION:
        return None
    return payload[1]


def encode_stream_path(path: StreamPath) -> bytes:
    if not 1 <= len(path.hops) <= MAX_PATH_HOPS:
        raise InvalidArgument(f"a stream path has 1..{MAX_PATH_HOPS} hops, not {len(path.hops)}")
    if not 1 <= path.stream_id <= 0xFFFFFFFF:
        raise InvalidArgument(f"stream id {path.stream_id} outside 1..2^32-1")
    parts = [
        _HEAD.pack(ROUTE_INFO_VERSION, RouteInfoType.STREAM_PATH, path.stream_id, len(path.hops))
    ]
    for hop in path.hops:
        name = hop.name.encode("ascii", errors="replace")
        if len(hop.public_key) != KEY_LEN:
            raise InvalidArgument(f"a hop's key is {KEY_LEN} bytes")
        if len(name) > MAX_RELAY_NAME_LEN or not _NAME.match(name):
            raise InvalidArgument(f"relay name {hop.name!r} is not a DNS label")
        parts.append(hop.public_key + bytes([len(name)]) + name)
    payload = b"".join(parts)
    assert len(payload) <= MAX_ROUTE_INFO_LEN  # 255 hops of at most 96 bytes fit
    return payload


def decode_stream_path(payload: bytes) -> StreamPath:
    """The STREAM_PATH in a ROUTE_INFO payload whose type is STREAM_PATH."""
    if len(payload) < _HEAD.size:
        raise MalformedRouteInfo(f"STREAM_PATH of {len(payload)} bytes, at least {_HEAD.size}")
    version, kind, stream_id, count = _HEAD.unpack_from(payload)
    if version != ROUTE_INFO_VERSION or kind != RouteInfoType.STREAM_PATH:
        raise MalformedRouteInfo(f"ROUTE_INFO version {version} type {kind} is not STREAM_PATH")
    if stream_id == 0:
        raise MalformedRouteInfo("STREAM_PATH for stream 0 (reserved)")
    if count == 0:
        raise MalformedRouteInfo("STREAM_PATH without hops")
    offset = _HEAD.size
    hops = []
    for index in range(count):
        if len(payload) < offset + KEY_LEN + 1:
            raise MalformedRouteInfo(f"STREAM_PATH hop {index} cut short at byte {offset}")
        key = payload[offset : offset + KEY_LEN]
        length = payload[offset + KEY_LEN]
        start = offset + KEY_LEN + 1
        name = payload[start : start + length]
        if length > MAX_RELAY_NAME_LEN or len(name) != length:
            raise MalformedRouteInfo(f"STREAM_PATH hop {index}: name length {length}")
        if not _NAME.match(name):
            raise MalformedRouteInfo(f"STREAM_PATH hop {index}: name is not a DNS label")
        hops.append(PathHop(bytes(key), name.decode("ascii")))
        offset = start + length
    if offset != len(payload):
        raise MalformedRouteInfo(f"STREAM_PATH has {len(payload) - offset} bytes after its hops")
    return StreamPath(stream_id, tuple(hops))
