"""What the router reports to its owner: events (to log), route details and statistics."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from altmesh.mesh.errors import FaultKind


@dataclass(frozen=True, slots=True)
class AnnouncementsRejected:
    """Well-formed announcements from `neighbor` that broke a database limit (or were forged in
    our name), aggregated since the last `take_events`: `count` of them, the last one's origin
    and what was wrong. The neighbor may only be flooding on what a hostile relay sent."""

    neighbor: bytes
    kind: FaultKind
    count: int
    origin: bytes
    detail: str


@dataclass(frozen=True, slots=True)
class RoutesChanged:
    """Routes changed since the last `take_events`: how many origin relays got another next hop
    (or became reachable or unreachable), and how many addresses another origin."""

    next_hops_changed: int
    destinations_changed: int
    reachable_relays: int


@dataclass(frozen=True, slots=True)
class SequenceJumped:
    """An announcement in our own name with a higher sequence number arrived (a restart that lost
    the persisted sequence, or a forgery): we continue above it and re-originate."""

    neighbor: bytes
    old_sequence: int
    new_sequence: int


RoutingEvent = AnnouncementsRejected | RoutesChanged | SequenceJumped


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """The route to one address: the origin relay it is attached to, our next hop towards it
    (None when it is attached here), the path cost and the relays on the path (us first)."""

    address: ipaddress.IPv6Address
    origin: bytes
    next_hop: bytes | None
    cost: int
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """Counters since start and the size of the database, for metrics and benchmarks."""

    sequence: int
    neighbors: int
    origins: int  # relays with an announcement in the database (us included)
    reachable_relays: int
    fragments: int
    destinations: int  # distinct addresses with a route (ours included)
    contested_destinations: int  # addresses announced by more than one relay
    database_bytes: int  # accounted size, what max_database_bytes limits
    database_wire_bytes: int  # the announcements' own bytes
    originations: int
    payloads_sent: int
    payload_bytes_sent: int
    payloads_received: int
    announcements_received: int
    announcements_accepted: int
    duplicates: int
    older: int
    malformed_payloads: int
    rejected: int  # announcements refused by a database limit
    expired: int
    spf_runs: int
