"""LinkStateRouter: the sans-IO link-state routing engine of one relay.

No sockets, no asyncio, no clock: every call that needs the time takes `now` (monotonic seconds).
The owner (the relay daemon) drives it like aioquic's QuicConnection:

    router = LinkStateRouter(my_id, now=t, first_sequence=persisted + 1, config=RoutingConfig())
    router.neighbor_up(peer, t)             # a relay link is established (peer proved its key)
    router.observe_rtt(peer, rtt, t)        # each PING/PONG round trip on that link
    router.set_destinations(addresses, t)   # the addresses of the nodes attached here (full set)
    router.receive(peer, payload, t)        # a ROUTE_INFO payload from peer; ProtocolError if bad
    router.neighbor_down(peer, t)           # the link is gone (in-flight payloads are lost)

and after each of these, and whenever `now >= router.next_timer_deadline()`:

    router.handle_timer(now)                # originate, flood deferred, age out, recompute routes
    save(router.sequence)                   # persist BEFORE sending: it must survive a restart
    for peer, payload in router.messages_to_send(now):
        link(peer).send_route_info(payload)
    for event in router.take_events(): log(event)

Mutating calls only record what happened; `handle_timer` does the work they schedule (at once if
the throttles allow: call it when the deadline is due, which may already be `now`). The hot path,
`next_hop(address)`, is two dict lookups (address -> origin relay -> next hop) plus a check that
the next hop's link is still up. Addresses attached here give None: deliver those locally.

Caller mistakes (an unknown neighbor, a bad argument) raise RouterUsageError; faults of a peer's
payload raise a ProtocolError subclass from `altmesh.mesh.errors` (the payload is then ignored
entirely); well-formed announcements that break a limit are counted and reported as events.
docs/routing.md describes the algorithm and the wire format.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

from altmesh.mesh.config import RoutingConfig
from altmesh.mesh.constants import (
    LIFETIME_OFFSET,
    MAX_COST,
    MAX_LINKS,
    MAX_SEQUENCE,
    MAX_SEQUENCE_JUMP,
    ROUTER_ID_LEN,
)
from altmesh.mesh.cost import LinkCost
from altmesh.mesh.destinations import DestinationTable
from altmesh.mesh.errors import FaultKind, RouterUsageError, RoutingError
from altmesh.mesh.events import (
    AnnouncementsRejected,
    RouteInfo,
    RoutesChanged,
    RoutingEvent,
    RoutingStats,
    SequenceJumped,
)
from altmesh.mesh.flooding import Flooding
from altmesh.mesh.lsdb import Change, Entry, LinkStateDatabase
from altmesh.mesh.origination import Origination
from altmesh.mesh.spf import links_change_routes, shortest_paths
from altmesh.mesh.throttle import SpfThrottle
from altmesh.mesh.wire import (
    Contents,
    Span,
    encode_fields,
    parse_contents,
    same_contents,
    scan_payload,
)


class LinkStateRouter:
    """The link-state database, flooding and shortest paths of one relay (see the module doc)."""

    def __init__(
        self,
        router_id: bytes,
        *,
        now: float,
        first_sequence: int,
        config: RoutingConfig | None = None,
    ) -> None:
        if not isinstance(router_id, bytes) or len(router_id) != ROUTER_ID_LEN:
            raise RouterUsageError(f"a router id is a {ROUTER_ID_LEN}-byte public key")
        if not 1 <= first_sequence <= MAX_SEQUENCE - MAX_SEQUENCE_JUMP:
            raise RouterUsageError(
                f"first_sequence {first_sequence} is outside 1..2^64-2^32"
                " (pass the persisted sequence + 1, or 1 on first start)"
            )
        if not math.isfinite(now):
            raise RouterUsageError(f"now is a finite monotonic time, not {now!r}")
        self._id = router_id
        self._config = config = config if config is not None else RoutingConfig()
        self._prefix = None if config.prefix is None else config.prefix.network_address.packed[:6]
        self._sequence = first_sequence - 1
        self._db = LinkStateDatabase(config)
        self._fragment0 = self._db.fragment0  # the same dict for the router's life
        self._destinations = DestinationTable()
        self._links: dict[bytes, LinkCost] = {}  # our neighbors whose link is up
        self._flooding = Flooding(config)
        self._queues = self._flooding.queues  # the same dict for the router's life
        self._own = Origination(config, now)
        self._spf = SpfThrottle(config.spf_delay, config.spf_hold, config.spf_max_wait)
        self._distance: dict[bytes, int] = {router_id: 0}
        self._next_hop: dict[bytes, bytes] = {}
        # Pending events, aggregated so a flood of bad input makes one event per neighbor/kind.
        self._faults: dict[tuple[bytes, FaultKind], tuple[int, bytes, str]] = {}
        self._jump: SequenceJumped | None = None
        self._draining = False
        self._next_hops_changed = 0
        self._destinations_changed = 0
        self._counters = dict.fromkeys(
            (
                "originations",
                "payloads_sent",
                "payload_bytes_sent",
                "payloads_received",
                "announcements_received",
                "announcements_accepted",
                "duplicates",
                "older",
                "malformed_payloads",
                "rejected",
                "expired",
                "spf_runs",
            ),
            0,
        )
        # Our (empty) fragment 0 exists from the start. Nobody hears it, so the throttle does not
        # count it: the first real change is originated at once.
        self._own.changed(0, now, forced=True)
        self._originate(now)

    @property
    def router_id(self) -> bytes:
        return self._id

    @property
    def sequence(self) -> int:
        """The highest sequence number used so far. Persist it before sending what
        `messages_to_send` returns; pass it + 1 as `first_sequence` after a restart."""
        return self._sequence

    @property
    def config(self) -> RoutingConfig:
        return self._config

    @property
    def neighbors(self) -> frozenset[bytes]:
        return frozenset(self._links)

    def next_hop(self, address: ipaddress.IPv6Address) -> bytes | None:
        """The neighbor to send a stream for `address` to; None if the address is attached here
        or has no route."""
        origin = self._destinations.origin_of.get(int(address))
        if origin is None:
            return None
        hop = self._next_hop.get(origin)
        return hop if hop in self._links else None

    def origin(self, address: ipaddress.IPv6Address) -> bytes | None:
        """The relay `address` is routed to (the nearest of its claimants), reachable or not;
        None when no relay announces it. With `next_hop` it tells an unknown destination from an
        unreachable one."""
        return self._destinations.origin_of.get(int(address))

    def route(self, address: ipaddress.IPv6Address) -> RouteInfo | None:
        """The route to `address` in detail (for status pages), or None without one."""
        origin = self._destinations.origin_of.get(int(address))
        if origin is None:
            return None
        if origin == self._id:
            return RouteInfo(address, origin, None, 0, (origin,))
        hop = self._next_hop.get(origin)
        if hop is None or hop not in self._links:
            return None
        return RouteInfo(address, origin, hop, self._distance[origin], self._path(origin))

    def relay_next_hop(self, relay: bytes) -> bytes | None:
        """The next hop towards another relay (by id), or None."""
        hop = self._next_hop.get(relay)
        return hop if hop in self._links else None

    @property
    def stats(self) -> RoutingStats:
        c = self._counters
        return RoutingStats(
            sequence=self._sequence,
            neighbors=len(self._links),
            origins=self._db.origin_count,
            reachable_relays=len(self._distance),
            fragments=self._db.fragments,
            destinations=len(self._destinations),
            contested_destinations=self._destinations.contested,
            database_bytes=self._db.size,
            database_wire_bytes=self._db.wire_bytes,
            originations=c["originations"],
            payloads_sent=c["payloads_sent"],
            payload_bytes_sent=c["payload_bytes_sent"],
            payloads_received=c["payloads_received"],
            announcements_received=c["announcements_received"],
            announcements_accepted=c["announcements_accepted"],
            duplicates=c["duplicates"],
            older=c["older"],
            malformed_payloads=c["malformed_payloads"],
            rejected=c["rejected"],
            expired=c["expired"],
            spf_runs=c["spf_runs"],
        )

    def take_events(self) -> list[RoutingEvent]:
        """Events since the last call (aggregated: at most one per neighbor and fault kind)."""
        events: list[RoutingEvent] = []
        if self._jump is not None:
            events.append(self._jump)
            self._jump = None
        for (neighbor, kind), (count, origin, detail) in self._faults.items():
            events.append(AnnouncementsRejected(neighbor, kind, count, origin, detail))
        self._faults.clear()
        if self._next_hops_changed or self._destinations_changed:
            events.append(
                RoutesChanged(
                    self._next_hops_changed, self._destinations_changed, len(self._distance)
                )
            )
            self._next_hops_changed = self._destinations_changed = 0
        return events

    def neighbor_up(self, neighbor: bytes, now: float) -> None:
        """A relay link to `neighbor` is established: it gets our whole database, and our next
        origination announces the link (with the initial cost until RTT samples arrive)."""
        if not isinstance(neighbor, bytes) or len(neighbor) != ROUTER_ID_LEN:
            raise RouterUsageError(f"a neighbor id is a {ROUTER_ID_LEN}-byte public key")
        if neighbor == self._id:
            raise RouterUsageError("a relay cannot be its own neighbor")
        if neighbor in self._links:
            raise RouterUsageError(f"neighbor {neighbor[:4].hex()}... is already up")
        if len(self._links) >= MAX_LINKS:
            raise RouterUsageError(f"a relay announces at most {MAX_LINKS} links")
        self._links[neighbor] = LinkCost(self._config)
        self._flooding.add_neighbor(neighbor, self._db.entries(first=self._id), now)
        self._own.changed(0, now)
        self._spf.changed(now)  # a link both ends still announce is usable again at once

    def neighbor_down(self, neighbor: bytes, now: float) -> None:
        """The link to `neighbor` is gone. It is no longer a next hop from this moment."""
        self._known_neighbor(neighbor)
        del self._links[neighbor]
        self._flooding.remove_neighbor(neighbor)
        self._own.changed(0, now)
        self._spf.changed(now)

    def drain(self, now: float) -> None:
        """This relay is shutting down: from now on it announces every link at MAX_COST (like
        RFC 6987's stub router), originated at once whatever the throttle, so that the other
        relays route new streams around it while the streams that cross it end. A path with
        no other way (and the nodes attached here) still reaches it. There is no way back: a
        relay that drains stops."""
        if not math.isfinite(now):
            raise RouterUsageError(f"now is a finite monotonic time, not {now!r}")
        if self._draining:
            return
        self._draining = True
        self._own.changed(0, now, forced=True)
        if self._originate(now):  # (with whatever else is pending: the throttle is bypassed)
            self._own.originated(now)

    @property
    def draining(self) -> bool:
        return self._draining

    def observe_rtt(self, neighbor: bytes, rtt: float, now: float) -> None:
        """One round-trip time sample (seconds) of the link to `neighbor`."""
        link = self._known_neighbor(neighbor)
        first = link.samples == 0
        try:
            changed = link.observe(rtt)
        except ValueError as error:
            raise RouterUsageError(str(error)) from None
        if changed:
            # The first sample gives the link its real cost (a topology change: a restored link
            # is not used while it is announced at the initial guess); later ones move it.
            self._own.changed(0, now, topology=first)

    def set_destinations(self, addresses: Iterable[ipaddress.IPv6Address], now: float) -> None:
        """The full set of addresses attached here that can be stream destinations."""
        wanted: set[bytes] = set()
        for address in addresses:
            if not isinstance(address, ipaddress.IPv6Address):
                raise RouterUsageError(f"a destination is an IPv6Address, not {address!r}")
            packed = address.packed
            if self._prefix is not None and packed[:6] != self._prefix:
                raise RouterUsageError(f"destination {address} is outside the network's prefix")
            wanted.add(packed)
        if len(wanted) > self._config.max_destinations_per_origin:
            raise RouterUsageError(
                f"{len(wanted)} destinations, more than max_destinations_per_origin"
                f" ({self._config.max_destinations_per_origin})"
            )
        self._own.set_addresses(wanted, now)

    def receive(self, neighbor: bytes, payload: bytes, now: float) -> None:
        """A ROUTE_INFO payload from `neighbor`. A malformed payload raises a ProtocolError
        subclass and changes nothing."""
        queue = self._queues.get(neighbor)
        if queue is None:
            self._known_neighbor(neighbor)  # raises
            return
        counters = self._counters
        counters["payloads_received"] += 1
        # Check everything before changing anything; an announcement byte for byte equal to the
        # stored one (a duplicate) was checked when it was stored.
        fragment0, db, prefix = self._fragment0, self._db, self._prefix
        work: list[tuple[Span, Entry | None, Contents | None]] = []
        try:
            for span in scan_payload(payload):
                if span.fragment == 0:
                    entry = fragment0.get(span.origin)
                else:
                    entry = db.get(span.origin, span.fragment)
                if (
                    entry is not None
                    and span.sequence == entry.sequence
                    and same_contents(payload, span, entry.data)
                ):
                    work.append((span, entry, None))
                else:
                    work.append((span, entry, parse_contents(payload, span, prefix)))
        except RoutingError:
            counters["malformed_payloads"] += 1
            raise
        counters["announcements_received"] += len(work)
        duplicates = older = 0
        for span, entry, contents in work:
            if contents is None:  # a duplicate: the neighbor has this version already
                duplicates += 1
                if entry is not None:
                    queue.pop(entry, None)
            elif entry is None or span.sequence > entry.sequence:
                if span.origin == self._id:
                    self._own_announcement_seen(neighbor, span, now)
                else:
                    self._accept(neighbor, payload, span, entry, contents, now)
            elif span.sequence == entry.sequence and span.origin == self._id:
                self._own_announcement_seen(neighbor, span, now)  # our number, not our contents
            else:  # older, or the same number with other contents: both ignored
                older += 1
        counters["duplicates"] += duplicates
        counters["older"] += older

    def handle_timer(self, now: float) -> None:
        """Do what is due by `now`: refresh and originate our announcements, age out others,
        flood deferred versions, recompute routes. (Our own are refreshed first, so that an
        owner that calls late never lets them expire.)"""
        if not math.isfinite(now):
            raise RouterUsageError(f"now is a finite monotonic time, not {now!r}")
        self._own.refresh_if_due(now)
        if now >= self._own.due() and self._originate(now):
            self._own.originated(now)
        for removed in self._db.expire(now):
            self._counters["expired"] += 1
            self._apply(removed, now)
        self._flooding.flood_held_back(now)
        if self._spf.due is not None and now >= self._spf.due:
            self._compute_routes()
            self._spf.ran(now)

    def next_timer_deadline(self) -> float:
        """When `handle_timer` must be called next (it may already have passed: call it now)."""
        deadline = min(
            self._own.refresh_due, self._own.due(), self._db.next_expiry, self._flooding.deadline()
        )
        if self._spf.due is not None:
            deadline = min(deadline, self._spf.due)
        return deadline

    def messages_to_send(self, now: float) -> list[tuple[bytes, bytes]]:
        """(neighbor, payload) pairs to send now, each payload <= MAX_ROUTE_INFO_LEN: the newest
        version of everything queued for that neighbor, with its remaining lifetime. A neighbor
        is sent to at most once per flood_pacing (the rest waits for next_timer_deadline), so
        that what arrives meanwhile coalesces and copies that neighbor sends us are not sent
        back to it."""
        out = self._flooding.output(now)
        self._counters["payloads_sent"] += len(out)
        self._counters["payload_bytes_sent"] += sum(len(payload) for _n, payload in out)
        return out

    def _known_neighbor(self, neighbor: bytes) -> LinkCost:
        link = self._links.get(neighbor)
        if link is None:
            raise RouterUsageError(f"{neighbor[:4].hex()}... is not a neighbor whose link is up")
        return link

    def _accept(
        self,
        neighbor: bytes,
        payload: bytes,
        span: Span,
        old: Entry | None,
        contents: Contents,
        now: float,
    ) -> None:
        data = payload[span.start : span.end]
        fault = self._db.limit_fault(span.origin, old, data, span.address_count)
        if fault is not None:
            self._counters["rejected"] += 1
            self._fault(neighbor, fault, span.origin, f"fragment {span.fragment}")
            return
        lifetime = min(span.lifetime, self._config.max_lifetime)
        installed = self._db.install(
            span.origin, span.fragment, span.sequence, data, contents, now + lifetime, neighbor
        )
        self._counters["announcements_accepted"] += 1
        self._apply(installed, now)
        self._flooding.flood(installed.entry, now, neighbor)

    def _own_announcement_seen(self, neighbor: bytes, span: Span, now: float) -> None:
        """Someone holds an announcement in our name that we did not make with these contents
        (OSPF's rule): continue above its sequence number and re-originate that fragment, empty if
        we no longer use it, so that ours replaces it everywhere."""
        if (
            span.sequence - self._sequence >= MAX_SEQUENCE_JUMP
            or span.sequence >= MAX_SEQUENCE - MAX_SEQUENCE_JUMP
        ):
            self._counters["rejected"] += 1
            self._fault(
                neighbor,
                "route_sequence_forged",
                span.origin,
                f"fragment {span.fragment} sequence {span.sequence}, ours {self._sequence}",
            )
            return
        if span.sequence > self._sequence:
            old = self._jump.old_sequence if self._jump is not None else self._sequence
            self._jump = SequenceJumped(neighbor, old, span.sequence)
            self._sequence = span.sequence
        self._own.changed(span.fragment, now, forced=True)

    def _originate(self, now: float) -> bool:
        """Originate every pending fragment of ours that changed (or must go out regardless),
        all with one new sequence number. Return whether anything was originated."""
        sequence = self._sequence + 1
        lifetime = self._config.lifetime
        if self._draining:
            links = sorted((n, MAX_COST) for n in self._links)
        else:
            links = sorted((n, link.announced) for n, link in self._links.items())
        neighbors = tuple(n for n, _c in links)
        costs = tuple(c for _n, c in links)
        originated = False
        for fragment, forced, addresses in self._own.take():
            first = fragment == 0
            data = encode_fields(
                self._id, sequence, lifetime, fragment, links if first else (), addresses
            )
            current = self._db.get(self._id, fragment)
            if not forced and (
                data[LIFETIME_OFFSET + 2 :] == current.data[LIFETIME_OFFSET + 2 :]
                if current is not None
                else not first and not addresses
            ):
                continue  # what we announce already (or an empty fragment never announced)
            contents = (
                Contents(neighbors, costs, addresses) if first else Contents((), (), addresses)
            )
            installed = self._db.install(
                self._id, fragment, sequence, data, contents, now + lifetime, None
            )
            self._apply(installed, now)
            self._flooding.flood(installed.entry, now, None)
            originated = True
        if originated:
            self._sequence = sequence
            self._counters["originations"] += 1
        return originated

    def _apply(self, change: Change, now: float) -> None:
        """Bring the destination table and the SPF schedule in line with one database change."""
        origin, distance, table = change.entry.origin, self._distance, self._destinations
        moved = 0
        for packed in change.removed:
            moved += table.release(int.from_bytes(packed, "big"), origin, distance)
        origin_of = table.origin_of
        for packed in change.added:
            address = int.from_bytes(packed, "big")
            if address not in origin_of:  # the usual case, inline: one relay announces it
                origin_of[address] = origin
                moved += 1
            else:
                moved += table.claim(address, origin, distance)
        self._destinations_changed += moved
        if change.topology_changed and (
            self._spf.due is not None
            or links_change_routes(change, self._distance, self._fragment0)
        ):
            self._spf.changed(now)  # (with a computation pending anyway, checking costs more)

    def _compute_routes(self) -> None:
        distance, next_hop = shortest_paths(self._id, self._db.fragment0, self._links)
        old = self._next_hop
        changed = sum(1 for origin, hop in next_hop.items() if old.get(origin) != hop)
        changed += sum(1 for origin in old if origin not in next_hop)
        self._distance, self._next_hop = distance, next_hop
        self._next_hops_changed += changed
        self._destinations_changed += self._destinations.resolve_all(distance)
        self._counters["spf_runs"] += 1

    def _path(self, origin: bytes) -> tuple[bytes, ...]:
        """The relays on our path to `origin`, us first: walked back from it through, at each
        relay, the lowest-id predecessor on a shortest path with the same first hop."""
        links, distance, hop = self._db.fragment0, self._distance, self._next_hop[origin]
        path = [origin]
        while path[-1] != self._id:
            node = path[-1]
            entry = links[node]
            path.append(
                min(
                    u
                    for u, cost in zip(entry.neighbors, entry.costs, strict=True)
                    if u in distance
                    and (u == self._id or self._next_hop.get(u) == hop)
                    and node in links[u].neighbors
                    and distance[u] + links[u].costs[links[u].neighbors.index(node)]
                    == distance[node]
                )
            )
        return tuple(reversed(path))

    def _fault(self, neighbor: bytes, kind: FaultKind, origin: bytes, detail: str) -> None:
        count, _origin, _detail = self._faults.get((neighbor, kind), (0, b"", ""))
        self._faults[(neighbor, kind)] = (count + 1, origin, detail)
