"""Where a stream opened on one of the relay's links goes: to a node attached here, to the next
relay towards its destination, or nowhere (a refusal with its RESET code).

The rule is docs/protocol.md section 7.1. Routes come from a `RouteTable` (the relay's routing
engine, `relay/routing.py`); relay links from the mesh (`relay/mesh.py`); attached nodes from
`relay/attached.py`. Nothing here sends anything: `relay/forwarding.py` opens or refuses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from altmesh.protocol.constants import ResetCode
from altmesh.relay.attached import AttachedNodes
from altmesh.relay.forwarding import Refusal
from altmesh.relay.link_state import RelayLink


class RouteTable(Protocol):
    """What the routing engine answers about a destination address."""

    def next_hop(self, address: ipaddress.IPv6Address) -> bytes | None:
        """The relay (key) to send a stream for `address` to; None without a usable route."""

    def is_announced(self, address: ipaddress.IPv6Address) -> bool:
        """Whether some relay announces `address` (reachable or not)."""

    def path(self, address: ipaddress.IPv6Address) -> tuple[bytes, ...]:
        """The relays of the route to `address`, this relay first; () without one."""


@dataclass(frozen=True)
class Target:
    """Open the other half on `link`; `hops_left` for a RELAY_OPEN, None for a node's OPEN."""

    link: RelayLink
    hops_left: int | None


NO_ROUTE = Refusal(ResetCode.NO_ROUTE, "no route to destination", "no_route")
UNREACHABLE = Refusal(ResetCode.UNREACHABLE, "destination unreachable", "unreachable")
HOP_LIMIT = Refusal(ResetCode.HOP_LIMIT, "hop limit reached", "hop_limit")
LOOP = Refusal(ResetCode.UNREACHABLE, "the next hop is where the stream came from", "unreachable")


def choose_target(
    destination: ipaddress.IPv6Address,
    hops_left: int | None,
    source: RelayLink,
    *,
    attached: AttachedNodes,
    routes: RouteTable | None,
    relay_link: Callable[[bytes], RelayLink | None],
    hop_limit: int,
) -> Target | Refusal:
    """The target of a stream `source`'s peer opened to `destination`.

    `hop_limit`: how many relays a stream may cross, this first one included; `hops_left`: None
    for an OPEN (then the stream may still cross `hop_limit - 1` relay links), else the
    RELAY_OPEN's. `relay_link(key)`: the established link to that relay, if any.
    """
    local = attached.link_for(destination)
    if local is not None:
        return Target(local, None)
    if routes is None:
        return NO_ROUTE
    budget = hop_limit - 1 if hops_left is None else hops_left
    if budget <= 0:
        return HOP_LIMIT
    hop = routes.next_hop(destination)
    if hop is None:
        return UNREACHABLE if routes.is_announced(destination) else NO_ROUTE
    link = relay_link(hop)
    if link is None or link.closed:
        return UNREACHABLE
    if link is source:
        return LOOP
    return Target(link, budget - 1)
