"""Fair shares of what routed streams take on the relay: a destination link's stream slots, and
the relay's memory for bytes waiting to be forwarded.

**Stream slots.** A destination (a service's link) lets the relay hold at most its `max_streams`
streams open towards it. Taken first come, first served, one source link that opens them all and
never sends a byte denies the destination to everyone else. So while a destination has free
slots any source may take them, but once it is full a source holding fewer than its fair share
(the slots divided by the sources holding streams there, itself included) gets one: the relay
resets the oldest stream of the source holding the most, above its own share, that has carried
no byte yet (else its oldest). A source at or above its share is refused. Every source is thus
served at least `max_streams // sources` streams whatever the others do.

**Buffered bytes.** Each half of a route holds at most one stream window of bytes its other side
has not taken yet. Across many routes whose destinations grant credit slowly that adds up
(1024 streams x 256 KiB is 256 MiB per pair of links), so the relay keeps a global budget: when
the bytes waiting in all routes exceed `max_buffered_bytes`, the route holding the most is reset
(repeatedly, until the total is under the budget again).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024

LinkT = TypeVar("LinkT", bound=Hashable)
RouteT = TypeVar("RouteT")


@dataclass
class _Held(Generic[RouteT]):
    route: RouteT
    moved: int = 0  # bytes the route carried


@dataclass(frozen=True)
class Admission(Generic[RouteT]):
    """What may happen to a new stream: `allowed`; `preempt` is a route to reset first (its
    source held more than its share), or None."""

    allowed: bool
    preempt: RouteT | None = None
    fair_share: int = 0
    held: int = 0


class StreamShares(Generic[LinkT, RouteT]):
    """Which source holds how many streams towards which destination, and the fair-share rule.
    Routes are known by identity (they need not be hashable)."""

    def __init__(self) -> None:
        # destination -> source -> its routes there, oldest first (by id)
        self._holders: dict[LinkT, dict[LinkT, collections.OrderedDict[int, _Held[RouteT]]]] = {}
        self._places: dict[int, tuple[LinkT, LinkT]] = {}

    def admit(self, source: LinkT, destination: LinkT, slots: int, free: int) -> Admission[RouteT]:
        """May `source` open one more stream to `destination`, which has `slots` in all and
        `free` of them unused?"""
        holders = self._holders.get(destination, {})
        held = len(holders.get(source, ()))
        sources = len(holders) + (0 if source in holders else 1)
        share = max(1, slots // sources)
        if free > 0:
            return Admission(True, fair_share=share, held=held)
        if held >= share or not holders:
            return Admission(False, fair_share=share, held=held)
        # Full, and this source is below its share: take a slot from the largest holder.
        hog, hog_routes = max(holders.items(), key=lambda item: len(item[1]))
        if hog is source or len(hog_routes) <= share:
            return Admission(False, fair_share=share, held=held)
        idle = next((h for h in hog_routes.values() if h.moved == 0), None)
        victim = idle if idle is not None else next(iter(hog_routes.values()))
        return Admission(True, preempt=victim.route, fair_share=share, held=held)

    def added(self, route: RouteT, source: LinkT, destination: LinkT) -> None:
        routes = self._holders.setdefault(destination, {}).setdefault(
            source, collections.OrderedDict()
        )
        routes[id(route)] = _Held(route)
        self._places[id(route)] = (source, destination)

    def carried(self, route: RouteT, nbytes: int) -> None:
        """The route moved `nbytes` (it is no longer idle)."""
        place = self._places.get(id(route))
        if place is not None:
            source, destination = place
            self._holders[destination][source][id(route)].moved += nbytes

    def removed(self, route: RouteT) -> None:
        place = self._places.pop(id(route), None)
        if place is None:
            return
        source, destination = place
        holders = self._holders[destination]
        routes = holders[source]
        del routes[id(route)]
        if not routes:
            del holders[source]
            if not holders:
                del self._holders[destination]

    def held(self, source: LinkT, destination: LinkT) -> int:
        return len(self._holders.get(destination, {}).get(source, ()))

    def __len__(self) -> int:
        return len(self._places)


class BufferBudget:
    """The bytes waiting in every route, against `max_buffered_bytes`."""

    def __init__(self, max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES) -> None:
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered = 0
        self.peak = 0

    def add(self, nbytes: int) -> bool:
        """`nbytes` more wait; False once the total is over the budget."""
        self.buffered += nbytes
        if self.buffered > self.peak:
            self.peak = self.buffered
        return self.buffered <= self.max_buffered_bytes

    def remove(self, nbytes: int) -> None:
        self.buffered -= nbytes

    @property
    def over(self) -> bool:
        return self.buffered > self.max_buffered_bytes

    def shed(self, largest: Callable[[], object | None], reset: Callable[[object], None]) -> int:
        """Reset the route `largest()` names until the total is under the budget; returns how
        many were reset."""
        count = 0
        while self.over:
            victim = largest()
            if victim is None:
                break
            reset(victim)
            count += 1
        return count
