"""Our own announcements: which fragment holds each of our addresses, which fragments must be
originated again, and when (the origination throttle and the refresh; docs/routing.md
section 2). The router encodes, stores and floods what `take` returns."""

from __future__ import annotations

from altmesh.mesh.config import RoutingConfig
from altmesh.mesh.constants import FRAGMENT0_ADDRESSES, FRAGMENT_ADDRESSES, MAX_FRAGMENT
from altmesh.mesh.throttle import OriginationThrottle


class Origination:
    """Two throttles with the same backoff rule (docs/routing.md section 2):

    - `throttle` counts every origination. A change of a link's *cost* (RTT samples after the
      first) and the periodic refresh wait for it, so a jittery link backs off to one
      origination per `max_origination_interval`.
    - `topology_throttle` counts only originations that carried a *topology* change: a link up
      or down, a link's first RTT sample (its real cost replacing the guess), our destinations,
      or a stale announcement in our name. Those wait only for it, so a link restored after
      minutes of cost changes is announced within `min_origination_interval`, while a link
      flapping up and down still backs off.
    """

    def __init__(self, config: RoutingConfig, now: float) -> None:
        self._refresh_interval = config.refresh_interval
        self.refresh_due = now + config.refresh_interval
        self.throttle = OriginationThrottle(
            config.min_origination_interval, config.max_origination_interval
        )
        self.topology_throttle = OriginationThrottle(
            config.min_origination_interval, config.max_origination_interval
        )
        self._topology_pending = False  # a pending change is a topology change
        self._taken_topology = False  # what take() took included one
        self._fragments: list[set[bytes]] = [set()]  # our addresses (16 bytes), by fragment
        self._fragment_of: dict[bytes, int] = {}
        self._dirty: dict[int, bool] = {}  # fragments to originate -> even if unchanged
        self._dirty_since = now  # when the oldest pending change was made

    def changed(
        self, fragment: int, now: float, *, forced: bool = False, topology: bool = True
    ) -> None:
        """`fragment` must be originated again (`forced`: even if its contents are unchanged),
        as soon as the throttle of this kind of change (`topology` or cost) allows."""
        if not self._dirty:
            self._dirty_since = now
        self._topology_pending = self._topology_pending or topology
        while fragment >= len(self._fragments):
            self._fragments.append(set())
        self._dirty[fragment] = forced or self._dirty.get(fragment, False)

    def set_addresses(self, wanted: set[bytes], now: float) -> None:
        """Our destinations are now `wanted`. An address keeps its fragment until withdrawn; a
        new one goes to the first fragment with room (1024 in fragment 0, 4091 in the others)."""
        for packed in [a for a in self._fragment_of if a not in wanted]:
            fragment = self._fragment_of.pop(packed)
            self._fragments[fragment].discard(packed)
            self.changed(fragment, now)
        fragment = 0
        for packed in sorted(wanted.difference(self._fragment_of)):
            while len(self._fragments[fragment]) >= _capacity(fragment):
                fragment += 1
                if fragment == len(self._fragments):
                    self._fragments.append(set())
            self._fragments[fragment].add(packed)
            self._fragment_of[packed] = fragment
            self.changed(fragment, now)

    def refresh_if_due(self, now: float) -> None:
        """Every refresh_interval, every fragment in use goes out again (new lifetime)."""
        if now >= self.refresh_due:
            self.refresh_due = now + self._refresh_interval
            for fragment, addresses in enumerate(self._fragments):
                if fragment == 0 or addresses:
                    self.changed(fragment, now, forced=True, topology=False)

    def due(self) -> float:
        """When the pending origination may happen (inf: none pending)."""
        if not self._dirty:
            return float("inf")
        throttle = self.topology_throttle if self._topology_pending else self.throttle
        return max(self._dirty_since, throttle.earliest())

    def take(self) -> list[tuple[int, bool, list[bytes]]]:
        """The pending fragments as (fragment, forced, its addresses ascending); none after."""
        pending = [
            (fragment, forced, sorted(self._fragments[fragment]))
            for fragment, forced in sorted(self._dirty.items())
        ]
        self._dirty.clear()
        self._taken_topology, self._topology_pending = self._topology_pending, False
        return pending

    def originated(self, now: float) -> None:
        """What the last `take` returned was originated at `now`: the throttles note it."""
        self.throttle.originated(now)
        if self._taken_topology:
            self.topology_throttle.originated(now)


def _capacity(fragment: int) -> int:
    if fragment > MAX_FRAGMENT:
        raise AssertionError("destinations are limited to what 256 fragments hold")
    return FRAGMENT0_ADDRESSES if fragment == 0 else FRAGMENT_ADDRESSES
