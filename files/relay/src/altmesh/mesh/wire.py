"""The ROUTE_INFO payload: announcements of link state, encoded and parsed strictly.

Layout (docs/routing.md section "Wire format"; all integers big-endian):

    payload      = version (1) · type (1) · count (2) · announcement{count}
    announcement = origin (32) · sequence (8) · lifetime (2) · fragment (1) ·
                   link_count (2) · address_count (2) ·
                   (neighbor (32) · cost (2)){link_count} · address (16){address_count}

`decode_payload` is the reference parser: it returns `Announcement` objects and raises only
MalformedAnnouncement / UnsupportedRoutingVersion. The router uses the two halves it is made of,
`scan_payload` (every length and header field) and `check_contents` (order, costs, prefix), so
that it can skip building objects for announcements it already holds byte for byte.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

from altmesh.mesh.constants import (
    ADDRESS_ENTRY_LEN,
    ANNOUNCEMENT_HEADER_LEN,
    LIFETIME_OFFSET,
    LINK_ENTRY_LEN,
    MAX_ANNOUNCEMENT_LEN,
    MAX_COST,
    MAX_FRAGMENT,
    MAX_LIFETIME,
    MAX_PAYLOAD_LEN,
    MAX_SEQUENCE,
    PAYLOAD_ANNOUNCEMENTS,
    PAYLOAD_HEADER_LEN,
    ROUTER_ID_LEN,
    ROUTING_VERSION,
)
from altmesh.mesh.errors import MalformedAnnouncement, UnsupportedRoutingVersion

_PAYLOAD_HEADER = struct.Struct(">BBH")
_ANNOUNCEMENT_HEADER = struct.Struct(">32sQHBHH")
_LIFETIME = struct.Struct(">H")
# NamedTuples built in the parsing loops without their Python-level __new__ (the hot path).
_new = tuple.__new__
assert _PAYLOAD_HEADER.size == PAYLOAD_HEADER_LEN
assert _ANNOUNCEMENT_HEADER.size == ANNOUNCEMENT_HEADER_LEN


@dataclass(frozen=True, slots=True)
class Announcement:
    """One fragment of one relay's link state, as it travels.

    `links` are (neighbor id, cost) in ascending neighbor order, only in fragment 0; `addresses`
    ascending. `lifetime` is the remaining lifetime in whole seconds.
    """

    origin: bytes
    sequence: int
    lifetime: int
    fragment: int
    links: tuple[tuple[bytes, int], ...] = ()
    addresses: tuple[ipaddress.IPv6Address, ...] = ()


class Span(NamedTuple):
    """Where one announcement sits in a payload, with its header fields (lengths checked)."""

    number: int  # its position in the payload, for error messages
    start: int
    end: int
    origin: bytes
    sequence: int
    lifetime: int
    fragment: int
    link_count: int
    address_count: int


def encode_announcement(announcement: Announcement) -> bytes:
    """The wire form of `announcement`. A value the layout cannot carry raises ValueError (a
    mistake of the caller, not of a peer)."""
    a = announcement
    if len(a.origin) != ROUTER_ID_LEN:
        raise ValueError(f"origin must be {ROUTER_ID_LEN} bytes, not {len(a.origin)}")
    if not 1 <= a.sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence {a.sequence} is outside 1..2^64-1")
    if not 1 <= a.lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetime {a.lifetime} is outside 1..{MAX_LIFETIME}")
    if not 0 <= a.fragment <= MAX_FRAGMENT:
        raise ValueError(f"fragment {a.fragment} is outside 0..{MAX_FRAGMENT}")
    if a.links and a.fragment != 0:
        raise ValueError("only fragment 0 carries links")
    neighbors = [neighbor for neighbor, _cost in a.links]
    if neighbors != sorted(set(neighbors)):
        raise ValueError("links must be in strictly ascending neighbor order")
    packed_addresses = [address.packed for address in a.addresses]
    if packed_addresses != sorted(set(packed_addresses)):
        raise ValueError("addresses must be in strictly ascending order")
    for neighbor, cost in a.links:
        if len(neighbor) != ROUTER_ID_LEN or neighbor == a.origin:
            raise ValueError("a link names another relay's 32-byte id")
        if not 1 <= cost <= MAX_COST:
            raise ValueError(f"cost {cost} is outside 1..{MAX_COST}")
    data = encode_fields(a.origin, a.sequence, a.lifetime, a.fragment, a.links, packed_addresses)
    if len(data) > MAX_ANNOUNCEMENT_LEN:
        raise ValueError(f"announcement of {len(data)} bytes exceeds {MAX_ANNOUNCEMENT_LEN}")
    return data


def encode_fields(
    origin: bytes,
    sequence: int,
    lifetime: int,
    fragment: int,
    links: Sequence[tuple[bytes, int]],
    addresses: Sequence[bytes],
) -> bytes:
    """The wire form of an announcement from checked fields (links and 16-byte addresses in
    ascending order): what `encode_announcement` and the router's origination share."""
    header = _ANNOUNCEMENT_HEADER.pack(
        origin, sequence, lifetime, fragment, len(links), len(addresses)
    )
    return b"".join(
        [header, *(neighbor + cost.to_bytes(2, "big") for neighbor, cost in links), *addresses]
    )


def encode_payload(announcements: Sequence[bytes]) -> bytes:
    """A payload carrying these encoded announcements (at least one; the caller keeps the total
    within MAX_PAYLOAD_LEN)."""
    if not 1 <= len(announcements) <= 0xFFFF:
        raise ValueError(f"a payload carries 1..65535 announcements, not {len(announcements)}")
    payload = _PAYLOAD_HEADER.pack(ROUTING_VERSION, PAYLOAD_ANNOUNCEMENTS, len(announcements))
    payload += b"".join(announcements)
    if len(payload) > MAX_PAYLOAD_LEN:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LEN}")
    return payload


def with_lifetime(data: bytes, lifetime: int) -> bytes:
    """An encoded announcement with its lifetime field replaced (flooding on ages it)."""
    return data[:LIFETIME_OFFSET] + _LIFETIME.pack(lifetime) + data[LIFETIME_OFFSET + 2 :]


def scan_payload(payload: bytes) -> list[Span]:
    """Check the payload header and every announcement's header and length; return their spans."""
    size = len(payload)
    if size < PAYLOAD_HEADER_LEN:
        raise MalformedAnnouncement(
            f"route payload: {size} bytes, shorter than its {PAYLOAD_HEADER_LEN}-byte header"
        )
    if size > MAX_PAYLOAD_LEN:
        raise MalformedAnnouncement(f"route payload: {size} bytes, more than {MAX_PAYLOAD_LEN}")
    version, kind, count = _PAYLOAD_HEADER.unpack_from(payload)
    if version != ROUTING_VERSION:
        raise UnsupportedRoutingVersion(
            f"route payload: version {version}, this relay speaks {ROUTING_VERSION}"
        )
    if kind != PAYLOAD_ANNOUNCEMENTS:
        raise MalformedAnnouncement(f"route payload: unknown type {kind}")
    if count == 0:
        raise MalformedAnnouncement("route payload: announcement count is 0")
    spans = []
    offset = PAYLOAD_HEADER_LEN
    for index in range(count):
        if offset + ANNOUNCEMENT_HEADER_LEN > size:
            raise MalformedAnnouncement(
                f"route payload: announcement {index} of {count}: header truncated"
                f" at byte {offset} of {size}"
            )
        origin, sequence, lifetime, fragment, links, addresses = _ANNOUNCEMENT_HEADER.unpack_from(
            payload, offset
        )
        if sequence == 0:
            raise MalformedAnnouncement(_at(index, origin, fragment) + "sequence 0")
        if lifetime == 0:
            raise MalformedAnnouncement(_at(index, origin, fragment) + "lifetime 0")
        if links and fragment != 0:
            raise MalformedAnnouncement(
                _at(index, origin, fragment) + f"{links} links outside fragment 0"
            )
        end = (
            offset
            + ANNOUNCEMENT_HEADER_LEN
            + links * LINK_ENTRY_LEN
            + addresses * ADDRESS_ENTRY_LEN
        )
        if end > size:
            raise MalformedAnnouncement(
                _at(index, origin, fragment)
                + f"{links} links and {addresses} addresses run {end - size} bytes past the end"
            )
        spans.append(
            _new(Span, (index, offset, end, origin, sequence, lifetime, fragment, links, addresses))
        )
        offset = end
    if offset != size:
        raise MalformedAnnouncement(
            f"route payload: {size - offset} bytes after the last of {count} announcements"
        )
    return spans


class Contents(NamedTuple):
    """The checked body of one announcement."""

    neighbors: tuple[bytes, ...]  # fragment 0 only
    costs: tuple[int, ...]
    addresses: list[bytes]  # 16 bytes each, ascending


NO_CONTENTS = Contents((), (), [])


def parse_contents(payload: bytes, span: Span, prefix: bytes | None) -> Contents:
    """Check one scanned announcement's links (strictly ascending neighbors, none the origin,
    cost >= 1) and addresses (strictly ascending, inside the 6-byte network `prefix` when given),
    and return them. (The checks run as whole-list operations; only a failure walks the list to
    say where.)"""
    links_at = span.start + ANNOUNCEMENT_HEADER_LEN
    addresses_at = links_at + span.link_count * LINK_ENTRY_LEN
    neighbors: tuple[bytes, ...] = ()
    costs: tuple[int, ...] = ()
    if span.link_count:
        flat = _fields("32sH", span.link_count).unpack_from(payload, links_at)
        neighbors, costs = flat[0::2], flat[1::2]
        if not _ascending(neighbors) or span.origin in neighbors or 0 in costs:
            _link_fault(span, neighbors, costs)
    addresses: list[bytes] = []
    if span.address_count:
        addresses = list(_fields("16s", span.address_count).unpack_from(payload, addresses_at))
    if not _ascending(addresses) or (
        prefix is not None and any(a[:6] != prefix for a in addresses)
    ):
        _address_fault(span, addresses, prefix)
    return _new(Contents, (neighbors, costs, addresses))


def _ascending(items: Sequence[bytes]) -> bool:
    """Whether `items` are in strictly ascending order (no two equal)."""
    return all(map(operator.lt, items, items[1:]))


@functools.lru_cache(maxsize=1024)
def _fields(item: str, count: int) -> struct.Struct:
    """A Struct that unpacks a whole section of `count` items in one call (one per count in use;
    counts are bounded by the payload size)."""
    return struct.Struct(">" + item * count)


def _link_fault(span: Span, neighbors: tuple[bytes, ...], costs: tuple[int, ...]) -> NoReturn:
    for n, (neighbor, cost) in enumerate(zip(neighbors, costs, strict=True)):
        if n and neighbor <= neighbors[n - 1]:
            problem = f"link {n} is not in strictly ascending neighbor order"
        elif neighbor == span.origin:
            problem = f"link {n} is to the origin"
        elif cost == 0:
            problem = f"link {n} has cost 0"
        else:
            continue
        raise MalformedAnnouncement(_where(span) + problem)
    raise AssertionError("a link fault was found and then not")


def _address_fault(span: Span, addresses: list[bytes], prefix: bytes | None) -> NoReturn:
    for n, address in enumerate(addresses):
        if n and address <= addresses[n - 1]:
            problem = f"address {n} is not in strictly ascending order"
        elif prefix is not None and address[:6] != prefix:
            problem = f"address {n} ({ipaddress.IPv6Address(address)}) is outside the network"
        else:
            continue
        raise MalformedAnnouncement(_where(span) + problem)
    raise AssertionError("an address fault was found and then not")


def decode_payload(
    payload: bytes, *, prefix: ipaddress.IPv6Network | None = None
) -> list[Announcement]:
    """Parse a payload completely (the reference parser)."""
    prefix_bytes = None if prefix is None else prefix.network_address.packed[:6]
    announcements = []
    for span in scan_payload(payload):
        contents = parse_contents(payload, span, prefix_bytes)
        announcements.append(
            Announcement(
                origin=span.origin,
                sequence=span.sequence,
                lifetime=span.lifetime,
                fragment=span.fragment,
                links=tuple(zip(contents.neighbors, contents.costs, strict=True)),
                addresses=tuple(ipaddress.IPv6Address(a) for a in contents.addresses),
            )
        )
    return announcements


def link_count_of(data: bytes) -> int:
    return int.from_bytes(data[43:45], "big")


def address_count_of(data: bytes) -> int:
    return int.from_bytes(data[45:47], "big")


def addresses_section(data: bytes) -> tuple[int, int]:
    """(offset, count) of the sorted 16-byte addresses of one encoded announcement."""
    return ANNOUNCEMENT_HEADER_LEN + link_count_of(data) * LINK_ENTRY_LEN, address_count_of(data)


def addresses_of(data: bytes) -> list[bytes]:
    """The addresses of one encoded announcement, 16 bytes each, ascending."""
    offset, count = addresses_section(data)
    return [
        data[offset + n * ADDRESS_ENTRY_LEN : offset + (n + 1) * ADDRESS_ENTRY_LEN]
        for n in range(count)
    ]


def contains_address(data: bytes, address: bytes) -> bool:
    """Whether one encoded announcement lists `address` (binary search of its sorted section)."""
    offset, count = addresses_section(data)
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        at = offset + middle * ADDRESS_ENTRY_LEN
        found = data[at : at + ADDRESS_ENTRY_LEN]
        if found == address:
            return True
        if found < address:
            low = middle + 1
        else:
            high = middle
    return False


def same_contents(payload: bytes, span: Span, data: bytes) -> bool:
    """Whether the announcement at `span` equals the stored encoded `data` of the same origin
    and sequence number, the lifetime aside."""
    return span.end - span.start == len(data) and (
        payload[span.start + LIFETIME_OFFSET + 2 : span.end] == data[LIFETIME_OFFSET + 2 :]
    )


def pack_payloads(announcements: Iterable[bytes]) -> list[bytes]:
    """Encoded announcements packed greedily, in order, into as few payloads as fit."""
    payloads: list[bytes] = []
    batch: list[bytes] = []
    size = PAYLOAD_HEADER_LEN
    for data in announcements:
        if batch and (size + len(data) > MAX_PAYLOAD_LEN or len(batch) == 0xFFFF):
            payloads.append(encode_payload(batch))
            batch, size = [], PAYLOAD_HEADER_LEN
        batch.append(data)
        size += len(data)
    if batch:
        payloads.append(encode_payload(batch))
    return payloads


def _where(span: Span) -> str:
    return _at(span.number, span.origin, span.fragment)


def _at(number: int, origin: bytes, fragment: int) -> str:
    return f"route announcement {number} (origin {origin[:4].hex()}..., fragment {fragment}): "
