"""The relay's routing engine (`altmesh.mesh.LinkStateRouter`), driven by the event loop.

The engine is sans-IO; this module feeds it what happens to the relay and carries out what it
asks for:

- relay links that come up or go (`neighbor_up` / `neighbor_down`), the RTT of each PONG on them
  (`observe_rtt`), and every ANNOUNCEMENTS payload they carry (`receive`);
- the addresses of the nodes attached to the relay (`set_destinations`, the whole set, given
  again whenever a node attaches or detaches; coalesced to once per loop iteration);
- its timers: `handle_timer` runs at `next_timer_deadline` and right after each input;
- its output: the sequence number is saved in SQLite **before** any payload that carries it is
  sent, then each (neighbor, payload) goes out as one ROUTE_INFO record on that relay's link;
- its events: routes that changed are logged; announcements a neighbor sent that broke a
  database limit become one security event per neighbor and kind (aggregated by the engine).

For streams it is the relay's `RouteTable` (`relay/next_hop.py`): `next_hop`, `is_announced`,
`path` are dictionary lookups. docs/routing.md describes the engine and how the relay uses it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable

from altmesh import events as ev
from altmesh.keyfile import encode_public_key
from altmesh.mesh import (
    AnnouncementsRejected,
    LinkStateRouter,
    RoutesChanged,
    RoutingConfig,
    SequenceJumped,
)
from altmesh.metrics import NodeMetrics
from altmesh.state import StateDB

log = logging.getLogger("altmesh.relay.routing")

# A sender that could not hand a payload to a link (gone meanwhile) returns False; the engine's
# neighbor_down for that link follows, and the neighbor gets the whole database when it is back.
SendRouteInfo = Callable[[bytes, bytes], bool]


class MeshRouting:
    """One relay's routing: the engine, its timer, its persisted sequence, its output."""

    def __init__(
        self,
        router_id: bytes,
        *,
        prefix: ipaddress.IPv6Network,
        state: StateDB,
        send: SendRouteInfo,
        destinations: Callable[[], Iterable[ipaddress.IPv6Address]],
        events: ev.SecurityEventLog,
        metrics: NodeMetrics,
        config: RoutingConfig | None = None,
        after_run: Callable[[], None] | None = None,
    ) -> None:
        """`after_run()` is called after each run of the engine (routes may have changed)."""
        self.after_run = after_run
        self.state = state
        self.send = send
        self.destinations = destinations
        self.events = events
        self.metrics = metrics
        self.loop = asyncio.get_running_loop()
        self.router = LinkStateRouter(
            router_id,
            now=time.monotonic(),
            first_sequence=state.route_sequence() + 1,
            config=config if config is not None else RoutingConfig(prefix=prefix),
        )
        self._saved_sequence = -1
        self._destinations_dirty = True
        self._run_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = False
        self._schedule()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()

    def drain(self) -> None:
        """The relay drains (SIGTERM): announce its links at the highest cost, so that the mesh
        routes new streams around it while the ones crossing it end (docs/routing.md)."""
        if not self._stopped:
            self.router.drain(time.monotonic())
            self._schedule()

    # ------------------------------------------------------------------ RouteTable

    def next_hop(self, address: ipaddress.IPv6Address) -> bytes | None:
        return self.router.next_hop(address)

    def is_announced(self, address: ipaddress.IPv6Address) -> bool:
        return self.router.origin(address) is not None

    def routes_over(self, neighbor: bytes) -> bool:
        """Whether the engine reaches relay `neighbor` over the direct link to it (both ends
        announce the link): false for a link that is up but not yet in the routes."""
        return self.router.relay_next_hop(neighbor) == neighbor

    def path(self, address: ipaddress.IPv6Address) -> tuple[bytes, ...]:
        router = self.router
        try:
            route = router.route(address)
        except (ValueError, KeyError):
            # The engine walks the path back over its database, which can be newer than its
            # last shortest-path run (a change within spf_delay): then the path is what is
            # certain, us, the next hop and the destination's relay, and streams are unaffected.
            log.debug("route(%s) failed while routes are being recomputed", address)
            known = (router.router_id, router.next_hop(address), router.origin(address))
            return tuple(dict.fromkeys(key for key in known if key is not None))
        return route.path if route is not None else ()

    # ------------------------------------------------------------------ what happens

    def neighbor_up(self, neighbor: bytes) -> None:
        self.router.neighbor_up(neighbor, time.monotonic())
        self._schedule()

    def neighbor_down(self, neighbor: bytes) -> None:
        self.router.neighbor_down(neighbor, time.monotonic())
        self._schedule()

    def observe_rtt(self, neighbor: bytes, rtt: float) -> None:
        if neighbor in self.router.neighbors:
            self.router.observe_rtt(neighbor, rtt, time.monotonic())
            self._schedule()

    def receive(self, neighbor: bytes, payload: bytes) -> None:
        """An ANNOUNCEMENTS payload from a neighbor; a malformed one raises its ProtocolError
        (the engine changed nothing)."""
        try:
            self.router.receive(neighbor, payload, time.monotonic())
        finally:
            self._schedule()

    def destinations_changed(self) -> None:
        self._destinations_dirty = True
        self._schedule()

    # ------------------------------------------------------------------ driving

    def _schedule(self) -> None:
        if not self._run_scheduled and not self._stopped:
            self._run_scheduled = True
            self.loop.call_soon(self._run)

    def _run(self) -> None:
        self._run_scheduled = False
        if self._stopped:
            return
        now = time.monotonic()
        router = self.router
        if self._destinations_dirty:
            self._destinations_dirty = False
            router.set_destinations(self.destinations(), now)
        if router.next_timer_deadline() <= now:
            router.handle_timer(now)
        if router.sequence != self._saved_sequence:
            self.state.save_route_sequence(router.sequence)  # before anything carries it
            self._saved_sequence = router.sequence
        for neighbor, payload in router.messages_to_send(now):
            self.send(neighbor, payload)
        for event in router.take_events():
            self._report(event)
        stats = router.stats
        self.metrics.route_relays.set(stats.reachable_relays)
        self.metrics.route_destinations.set(stats.destinations)
        if self.after_run is not None:
            self.after_run()
        self._arm(router.next_timer_deadline())

    def _arm(self, deadline: float) -> None:
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._schedule()

    def _report(self, event: RoutesChanged | AnnouncementsRejected | SequenceJumped) -> None:
        match event:
            case RoutesChanged(next_hops, destinations, reachable):
                log.info(
                    "routes changed: %d next hops, %d destinations; %d relays reachable",
                    next_hops,
                    destinations,
                    reachable,
                )
            case AnnouncementsRejected(neighbor, kind, count, origin, detail):
                self.events.emit(
                    ev.PROTOCOL_VIOLATION,
                    kind,
                    peer_key=encode_public_key(neighbor),
                    origin=encode_public_key(origin),
                    count=count,
                    detail=detail,
                )
            case SequenceJumped(neighbor, old, new):
                log.warning(
                    "an announcement in our name with sequence %d (ours %d) came from %s: "
                    "continuing above it",
                    new,
                    old,
                    encode_public_key(neighbor),
                )
