"""An in-memory mesh of LinkStateRouters with simulated time, for tests and benchmarks.

Links deliver payloads in order after their one-way latency (half the RTT, in whole ticks of
1 ms), like a TCP connection; a link that goes down loses what is in flight on it. Every router
handles all payloads that reach it in one tick before its timers run and before it sends (as the
relay daemon handles what one read gave it), so its output coalesces as in a real relay.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from altmesh.mesh.config import RoutingConfig
from altmesh.mesh.events import AnnouncementsRejected, RoutesChanged, SequenceJumped
from altmesh.mesh.router import LinkStateRouter

TICK = 0.001  # seconds


def router_id(number: int) -> bytes:
    """A stable 32-byte router id for relay `number` of a simulation."""
    return hashlib.blake2s(b"altmesh-simulated-relay" + number.to_bytes(4, "big")).digest()


def random_partial_mesh(
    n: int, rng: random.Random, *, min_degree: int = 3, max_degree: int = 8
) -> dict[tuple[int, int], float]:
    """Links (i < j) -> RTT (2-50 ms) of a random connected partial mesh of relays 0..n-1: a
    random spanning path, then random links until each relay has the degree drawn for it in
    min_degree..max_degree (AssertionError if the draw cannot be met)."""
    target = [rng.randint(min_degree, max_degree) for _ in range(n)]
    degree = [0] * n
    links: dict[tuple[int, int], float] = {}

    def link(i: int, j: int) -> None:
        links[(min(i, j), max(i, j))] = rng.uniform(0.002, 0.050)
        degree[i] += 1
        degree[j] += 1

    order = list(range(n))
    rng.shuffle(order)
    for i, j in itertools.pairwise(order):
        link(i, j)
    for _ in range(50):
        short = [i for i in range(n) if degree[i] < target[i]]
        if not short:
            break
        rng.shuffle(short)
        for i in short:
            candidates = [
                j
                for j in short
                if j != i and degree[j] < max_degree and (min(i, j), max(i, j)) not in links
            ]
            if degree[i] < target[i] and candidates:
                link(i, rng.choice(candidates))
    if n > max_degree:
        assert min(degree) >= min_degree and max(degree) <= max_degree, (min(degree), max(degree))
    return links


@dataclass
class Traffic:
    """What crossed the simulated links."""

    payloads: int = 0
    payload_bytes: int = 0
    lost: int = 0  # in flight on a link that went down, or sent over a half-open link
    by_link: dict[tuple[bytes, bytes], int] = field(default_factory=dict)


class SimulatedMesh:
    def __init__(self, config: RoutingConfig | None = None, *, start: float = 0.0) -> None:
        self.config = config if config is not None else RoutingConfig()
        self.routers: dict[bytes, LinkStateRouter] = {}
        self.traffic = Traffic()
        self.rejected: list[AnnouncementsRejected] = []
        self.jumps: list[SequenceJumped] = []
        self.last_route_change = -math.inf
        self.last_delivery = -math.inf
        self._tick = round(start / TICK)
        self._latency: dict[tuple[bytes, bytes], int] = {}  # (from, to) -> ticks; up at `from`
        self._generation: dict[tuple[bytes, bytes], int] = {}
        self._rtt: dict[frozenset[bytes], float] = {}
        self._queue: list[tuple[int, int, bytes, bytes, int, bytes | None]] = []
        self._armed: dict[bytes, int] = {}
        self._order = itertools.count()
        self._deliveries_pending = 0

    @property
    def now(self) -> float:
        return self._tick * TICK

    def add_router(
        self,
        identity: bytes,
        *,
        first_sequence: int = 1,
        destinations: Iterable[ipaddress.IPv6Address] = (),
    ) -> LinkStateRouter:
        router = LinkStateRouter(
            identity, now=self.now, first_sequence=first_sequence, config=self.config
        )
        router.set_destinations(destinations, self.now)
        self.routers[identity] = router
        self._arm(identity)
        return router

    def remove_router(self, identity: bytes) -> LinkStateRouter:
        """Stop a relay (a crash): its links go down at the other ends."""
        for a, b in [pair for pair in self._latency if identity in pair]:
            self._latency.pop((a, b), None)
            self._generation[(a, b)] = self._generation.get((a, b), 0) + 1
            if b == identity and a in self.routers:
                self.routers[a].neighbor_down(b, self.now)
                self._arm(a)
        self._armed.pop(identity, None)
        return self.routers.pop(identity)

    def connect(self, a: bytes, b: bytes, rtt: float) -> None:
        """A link comes up at both ends, and each end takes one RTT sample of it."""
        self.open_half(a, b, rtt)
        self.open_half(b, a, rtt)

    def open_half(self, a: bytes, b: bytes, rtt: float) -> None:
        """`a` considers its link to `b` up (`b` may not: a half-open link)."""
        self._latency[(a, b)] = max(1, round(rtt / 2 / TICK))
        self._rtt[frozenset((a, b))] = rtt
        self.routers[a].neighbor_up(b, self.now)
        self.routers[a].observe_rtt(b, rtt, self.now)
        self._arm(a)

    def disconnect(self, a: bytes, b: bytes) -> None:
        """The link goes down at both ends; payloads in flight on it are lost."""
        for x, y in ((a, b), (b, a)):
            if self._latency.pop((x, y), None) is not None:
                self._generation[(x, y)] = self._generation.get((x, y), 0) + 1
                self.routers[x].neighbor_down(y, self.now)
                self._arm(x)

    def sample_rtt(self, a: bytes, b: bytes, rtt: float) -> None:
        """`a` measures the RTT of its link to `b`."""
        self.routers[a].observe_rtt(b, rtt, self.now)
        self._arm(a)

    def drain(self, identity: bytes) -> None:
        """Relay `identity` starts draining (LinkStateRouter.drain)."""
        router = self.routers[identity]
        router.drain(self.now)
        self._flush(identity, router, self.now)
        self._arm(identity)

    def set_destinations(self, identity: bytes, addresses: Iterable[ipaddress.IPv6Address]) -> None:
        self.routers[identity].set_destinations(addresses, self.now)
        self._arm(identity)

    def two_way_links(self) -> list[tuple[bytes, bytes, float]]:
        """Every link up at both ends, with its RTT (each once, in no particular order)."""
        return [
            (a, b, self._rtt[frozenset((a, b))])
            for a, b in self._latency
            if a < b and (b, a) in self._latency
        ]

    def run(self, seconds: float) -> None:
        """Advance simulated time by `seconds`, doing everything that falls due."""
        self._run_until(self._tick + round(seconds / TICK))

    def run_until_quiet(self, horizon: float = 60.0, limit: float = 3600.0) -> float:
        """Run until nothing is in flight and no timer is due within `horizon` seconds; return
        the simulated time then. More than `limit` simulated seconds raises RuntimeError."""
        end = self._tick + round(limit / TICK)
        horizon_ticks = round(horizon / TICK)
        while self._queue:
            if not self._deliveries_pending and self._queue[0][0] > self._tick + horizon_ticks:
                break
            if self._queue[0][0] > end:
                raise RuntimeError(f"mesh still busy after {limit} simulated seconds")
            self._run_until(self._queue[0][0])
        return self.now

    def _run_until(self, end: int) -> None:
        while self._queue and self._queue[0][0] <= end:
            tick = self._queue[0][0]
            self._tick = tick
            now = self.now
            arrivals: dict[bytes, list[tuple[bytes, int, bytes | None]]] = {}
            while self._queue and self._queue[0][0] == tick:
                _t, _n, target, source, generation, payload = heapq.heappop(self._queue)
                if payload is not None:
                    self._deliveries_pending -= 1
                arrivals.setdefault(target, []).append((source, generation, payload))
            for target, items in arrivals.items():
                router = self.routers.get(target)
                if router is None:
                    continue
                if self._armed.get(target) == tick:
                    del self._armed[target]
                for source, generation, payload in items:
                    if payload is None:
                        continue  # a timer
                    if (target, source) not in self._latency or self._generation.get(
                        (source, target), 0
                    ) != generation:
                        self.traffic.lost += 1
                        continue
                    self.last_delivery = now
                    router.receive(source, payload, now)
                if now >= router.next_timer_deadline():
                    router.handle_timer(now)
                self._flush(target, router, now)
                self._arm(target, later_than_now=True)
        self._tick = max(self._tick, end)

    def _flush(self, identity: bytes, router: LinkStateRouter, now: float) -> None:
        for neighbor, payload in router.messages_to_send(now):
            link = (identity, neighbor)
            self.traffic.payloads += 1
            self.traffic.payload_bytes += len(payload)
            self.traffic.by_link[link] = self.traffic.by_link.get(link, 0) + 1
            heapq.heappush(
                self._queue,
                (
                    self._tick + self._latency[link],
                    next(self._order),
                    neighbor,
                    identity,
                    self._generation.get(link, 0),
                    payload,
                ),
            )
            self._deliveries_pending += 1
        for event in router.take_events():
            if isinstance(event, RoutesChanged):
                self.last_route_change = now
            elif isinstance(event, AnnouncementsRejected):
                self.rejected.append(event)
            else:
                self.jumps.append(event)

    def _arm(self, identity: bytes, *, later_than_now: bool = False) -> None:
        """Make sure the router's timer is in the queue (after it ran at this tick: at the next
        tick at the earliest, so that a deadline that stays due cannot stall time)."""
        deadline = self.routers[identity].next_timer_deadline()
        if deadline == math.inf:
            return
        due = self._tick if deadline == -math.inf else math.ceil(deadline / TICK - 1e-9)
        tick = max(self._tick + later_than_now, due)
        armed = self._armed.get(identity)
        if armed is not None and armed <= tick:
            return  # a wake-up at or before it is queued; it re-arms
        self._armed[identity] = tick
        heapq.heappush(self._queue, (tick, next(self._order), identity, identity, 0, None))
