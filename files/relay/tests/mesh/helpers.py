"""Shared pieces of the routing tests: ids, addresses, announcements, a router with neighbors."""

from __future__ import annotations

import ipaddress

from altmesh.mesh import (
    Announcement,
    LinkStateRouter,
    RoutingConfig,
    decode_payload,
    encode_announcement,
)
from altmesh.mesh.simulation import router_id
from altmesh.mesh.wire import encode_payload

PREFIX = ipaddress.IPv6Network("fd00:5100::/48")


def rid(number: int) -> bytes:
    return router_id(number)


def address(number: int) -> ipaddress.IPv6Address:
    return PREFIX[number]


def payload(*announcements: Announcement) -> bytes:
    return encode_payload([encode_announcement(a) for a in announcements])


def announcement(
    origin: int,
    sequence: int,
    *,
    links: dict[int, int] | None = None,
    addresses: list[int] | None = None,
    fragment: int = 0,
    lifetime: int = 3600,
) -> Announcement:
    """An announcement by relay `origin` with links {relay number: cost} and addresses."""
    return Announcement(
        origin=rid(origin),
        sequence=sequence,
        lifetime=lifetime,
        fragment=fragment,
        links=tuple(sorted((rid(n), cost) for n, cost in (links or {}).items())),
        addresses=tuple(sorted(address(n) for n in (addresses or []))),
    )


def router(
    number: int = 0,
    *,
    neighbors: tuple[int, ...] = (),
    now: float = 0.0,
    config: RoutingConfig | None = None,
    first_sequence: int = 1,
) -> LinkStateRouter:
    """Relay `number` with links up to `neighbors`, what is due in the next 0.5 s done (its
    first origination, a route computation) and its output drained."""
    r = LinkStateRouter(rid(number), now=now, first_sequence=first_sequence, config=config)
    for n in neighbors:
        r.neighbor_up(rid(n), now)
    r.handle_timer(now)
    r.messages_to_send(now)
    while (deadline := r.next_timer_deadline()) <= now + 0.5:
        r.handle_timer(deadline)
        r.messages_to_send(deadline)
    return r


def sent_announcements(
    messages: list[tuple[bytes, bytes]],
) -> dict[bytes, list[Announcement]]:
    """neighbor -> the announcements sent to it, in order."""
    out: dict[bytes, list[Announcement]] = {}
    for neighbor, data in messages:
        out.setdefault(neighbor, []).extend(decode_payload(data))
    return out
