"""Faults of routing input, and the exception for mistakes of the router's owner.

A malformed payload from a neighbor raises exactly one of the ProtocolError subclasses below;
any other exception from `LinkStateRouter.receive` is a bug (the fuzz target checks this).
Payloads that are well formed but break a database limit are not errors of the neighbor (it may
only be flooding on what a hostile relay sent it): they are counted and reported as
`AnnouncementsRejected` events, with the kinds listed in `FaultKind`.
"""

from __future__ import annotations

from typing import Literal

from altmesh.protocol.errors import ProtocolError


class RoutingError(ProtocolError):
    """Base of every fault in a ROUTE_INFO payload."""

    kind = "route_error"


class MalformedAnnouncement(RoutingError):
    """A payload or announcement does not match the layout of docs/routing.md."""

    kind = "route_malformed"


class UnsupportedRoutingVersion(RoutingError):
    """The payload's version byte is not one this relay speaks."""

    kind = "route_version"


class RouterUsageError(Exception):
    """The router's owner called it wrongly (unknown neighbor, bad argument): a bug of the caller,
    never a fault of a peer."""


FaultKind = Literal[
    "route_limit_origins",  # a new origin while the database holds max_origins
    "route_limit_destinations",  # an origin announcing more than max_destinations_per_origin
    "route_limit_bytes",  # the database would exceed max_database_bytes
    "route_sequence_forged",  # an announcement in our name too far ahead to follow
]
