"""The relay mesh's link-state routing engine (sans-IO): see `altmesh.mesh.router`.

Each relay floods announcements of its links (with costs from smoothed RTTs) and of the
addresses attached to it; every relay computes shortest paths over the links both ends announce,
and keeps a next hop per destination address. docs/routing.md is the description and the
specification of the ROUTE_INFO payload.
"""

from altmesh.mesh.config import RoutingConfig
from altmesh.mesh.cost import cost_for_rtt
from altmesh.mesh.errors import (
    FaultKind,
    MalformedAnnouncement,
    RouterUsageError,
    RoutingError,
    UnsupportedRoutingVersion,
)
from altmesh.mesh.events import (
    AnnouncementsRejected,
    RouteInfo,
    RoutesChanged,
    RoutingEvent,
    RoutingStats,
    SequenceJumped,
)
from altmesh.mesh.router import LinkStateRouter
from altmesh.mesh.wire import Announcement, decode_payload, encode_announcement, encode_payload

__all__ = [
    "Announcement",
    "AnnouncementsRejected",
    "FaultKind",
    "LinkStateRouter",
    "MalformedAnnouncement",
    "RouteInfo",
    "RouterUsageError",
    "RoutesChanged",
    "RoutingConfig",
    "RoutingError",
    "RoutingEvent",
    "RoutingStats",
    "SequenceJumped",
    "UnsupportedRoutingVersion",
    "cost_for_rtt",
    "decode_payload",
    "encode_announcement",
    "encode_payload",
]
