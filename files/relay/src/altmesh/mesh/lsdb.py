"""The link-state database: the newest announcement of every (origin, fragment), with limits.

Entries are stored as their encoded bytes (what is flooded on and handed to new neighbors); the
links of fragment 0 are kept parsed (neighbors and costs) for the shortest-path computation,
with neighbor ids shared with the database's own origin ids where it knows them. Each entry
object lives as long as its (origin, fragment) is in the database and is updated in place by
newer versions, so flooding queues can hold entries and always send the newest version.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from altmesh.mesh.config import RoutingConfig
from altmesh.mesh.errors import FaultKind
from altmesh.mesh.wire import (
    Contents,
    addresses_of,
    addresses_section,
    contains_address,
)

# Database bytes are counted as each announcement's bytes plus what the objects that hold it
# (entry, parsed links) and each of its addresses (the destination table) cost in memory, so
# that max_database_bytes bounds memory, not only wire bytes. bench/bench_routing.py measures
# the real figure with tracemalloc beside this estimate.
ENTRY_OVERHEAD = 400
ADDRESS_OVERHEAD = 120
_new = tuple.__new__  # a NamedTuple without its Python-level __new__ (the hot path)


class Entry:
    """One stored announcement: (origin, fragment) and its newest version."""

    __slots__ = (
        "addresses",
        "costs",
        "data",
        "expires",
        "flooded_at",
        "fragment",
        "live",
        "neighbors",
        "origin",
        "sequence",
        "source",
    )

    def __init__(
        self,
        origin: bytes,
        fragment: int,
        sequence: int,
        data: bytes,
        neighbors: tuple[bytes, ...],
        costs: tuple[int, ...],
        addresses: int,
        expires: float,
        source: bytes | None,
    ) -> None:
        self.origin = origin
        self.fragment = fragment
        self.sequence = sequence
        self.data = data
        self.neighbors = neighbors  # fragment 0 only; empty elsewhere
        self.costs = costs
        self.addresses = addresses
        self.expires = expires
        self.source = source  # the neighbor this version came from (None: originated here)
        self.flooded_at = -math.inf  # when a version of it was last queued to the neighbors
        self.live = True  # False once removed from the database


class Change(NamedTuple):
    """What one install or removal changed."""

    entry: Entry
    added: list[bytes]  # addresses this origin did not announce before (16 bytes each)
    removed: list[bytes]  # addresses this origin no longer announces
    topology_changed: bool  # the origin's links changed: from these to the entry's
    old_neighbors: tuple[bytes, ...]
    old_costs: tuple[int, ...]


class LinkStateDatabase:
    def __init__(self, config: RoutingConfig) -> None:
        self._config = config
        self._first: dict[bytes, Entry] = {}  # origin -> its fragment 0
        self._rest: dict[bytes, dict[int, Entry]] = {}  # origin -> its fragments 1..255
        # One bytes object per relay id the database names (as origin or neighbor), shared by
        # every entry naming it: 32-byte ids repeated in every link would double its memory.
        self._ids: dict[bytes, bytes] = {}
        self._ids_limit = 1024
        self.origin_count = 0
        self.size = 0  # accounted bytes, see ENTRY_OVERHEAD
        self.wire_bytes = 0
        self.fragments = 0
        self.addresses = 0  # address entries, over all fragments
        self.next_expiry = math.inf  # no entry expires before this (it may be early, not late)

    @property
    def fragment0(self) -> Mapping[bytes, Entry]:
        """origin -> its fragment 0 (links): what shortest paths are computed over."""
        return self._first

    def has_origin(self, origin: bytes) -> bool:
        return origin in self._first or origin in self._rest

    def get(self, origin: bytes, fragment: int) -> Entry | None:
        if fragment == 0:
            return self._first.get(origin)
        rest = self._rest.get(origin)
        return None if rest is None else rest.get(fragment)

    def entries(self, first: bytes | None = None) -> Iterator[Entry]:
        """Every stored entry; those of origin `first` first, fragment 0 first."""
        if first is not None:
            if first in self._first:
                yield self._first[first]
            yield from self._rest.get(first, {}).values()
        for origin, entry in self._first.items():
            if origin != first:
                yield entry
        for origin, rest in self._rest.items():
            if origin != first:
                yield from rest.values()

    def limit_fault(
        self, origin: bytes, old: Entry | None, data: bytes, addresses: int
    ) -> FaultKind | None:
        """Which limit storing this new version of `old` (None: a new fragment) would break."""
        config = self._config
        if (
            old is None
            and self.origin_count >= config.max_origins
            and not (origin in self._first or origin in self._rest)
        ):
            return "route_limit_origins"
        size = len(data) + ENTRY_OVERHEAD + ADDRESS_OVERHEAD * addresses
        if old is not None:
            size -= len(old.data) + ENTRY_OVERHEAD + ADDRESS_OVERHEAD * old.addresses
        if self.size + size > config.max_database_bytes:
            return "route_limit_bytes"
        rest = self._rest.get(origin)
        if rest is not None:  # several fragments: count them all
            first = self._first.get(origin)
            others = [e for e in rest.values() if e is not old]
            if first is not None and first is not old:
                others.append(first)
            addresses += sum(e.addresses for e in others)
        if addresses > config.max_destinations_per_origin:
            return "route_limit_destinations"
        return None

    def install(
        self,
        origin: bytes,
        fragment: int,
        sequence: int,
        data: bytes,
        contents: Contents,
        expires: float,
        source: bytes | None,
    ) -> Change:
        """Store a newer version (limits already checked by the caller)."""
        first = self._first
        old = first.get(origin) if fragment == 0 else self.get(origin, fragment)
        neighbors, costs, addresses = contents
        ids = self._ids
        if neighbors:
            neighbors = tuple([ids.setdefault(n, n) for n in neighbors])
        if old is None:
            if not (origin in first or origin in self._rest):
                self.origin_count += 1
            origin = ids.setdefault(origin, origin)
            entry = Entry(
                origin, fragment, sequence, data, neighbors, costs, len(addresses), expires, source
            )
            if fragment == 0:
                first[origin] = entry
            else:
                self._rest.setdefault(origin, {})[fragment] = entry
            self.fragments += 1
            added, removed = addresses, list[bytes]()
            topology_changed = bool(neighbors)
            old_neighbors: tuple[bytes, ...] = ()
            old_costs: tuple[int, ...] = ()
        else:
            entry = old
            self._account(old, -1)
            old_offset, old_count = addresses_section(old.data)
            if old_count == len(addresses) and old.data[old_offset:] == b"".join(addresses):
                added, removed = [], []
            else:
                before = addresses_of(old.data)
                before_set, after_set = set(before), set(addresses)
                added = [a for a in addresses if a not in before_set]
                removed = [a for a in before if a not in after_set]
            old_neighbors, old_costs = old.neighbors, old.costs
            topology_changed = neighbors != old_neighbors or costs != old_costs
            entry.sequence, entry.data, entry.expires, entry.source = (
                sequence,
                data,
                expires,
                source,
            )
            entry.addresses = len(addresses)
            if topology_changed:
                entry.neighbors, entry.costs = neighbors, costs
        self._account(entry, +1)
        if origin in self._rest:
            added = self._not_in_other_fragments(entry, added)
            removed = self._not_in_other_fragments(entry, removed)
        if expires < self.next_expiry:
            self.next_expiry = expires
        if len(ids) > self._ids_limit:
            self._forget_unused_ids()
        return _new(Change, (entry, added, removed, topology_changed, old_neighbors, old_costs))

    def remove(self, entry: Entry) -> Change:
        """Take an entry out (expired); what it announced is withdrawn."""
        origin = entry.origin
        if entry.fragment == 0:
            del self._first[origin]
        else:
            rest = self._rest[origin]
            del rest[entry.fragment]
            if not rest:
                del self._rest[origin]
        if not self.has_origin(origin):
            self.origin_count -= 1
        entry.live = False
        self.fragments -= 1
        self._account(entry, -1)
        removed = self._not_in_other_fragments(entry, addresses_of(entry.data))
        return _new(
            Change, (entry, [], removed, bool(entry.neighbors), entry.neighbors, entry.costs)
        )

    def expire(self, now: float) -> list[Change]:
        """Remove every entry whose lifetime has run out by `now`."""
        if now < self.next_expiry:
            return []
        expired = [entry for entry in self.entries() if entry.expires <= now]
        changes = [self.remove(entry) for entry in expired]
        self.next_expiry = min((entry.expires for entry in self.entries()), default=math.inf)
        return changes

    def _forget_unused_ids(self) -> None:
        """Rebuild the id table from what the entries name (when it has doubled: amortised
        constant time per install), so that ids no entry names any more do not accumulate."""
        ids: dict[bytes, bytes] = {}
        for entry in self.entries():
            ids.setdefault(entry.origin, entry.origin)
            for neighbor in entry.neighbors:
                ids.setdefault(neighbor, neighbor)
        self._ids = ids
        self._ids_limit = 2 * len(ids) + 1024

    def _account(self, entry: Entry, sign: int) -> None:
        wire, addresses = len(entry.data), entry.addresses
        self.size += sign * (wire + ENTRY_OVERHEAD + ADDRESS_OVERHEAD * addresses)
        self.wire_bytes += sign * wire
        self.addresses += sign * addresses

    def _not_in_other_fragments(self, entry: Entry, addresses: list[bytes]) -> list[bytes]:
        """An address listed in two fragments of one origin stays announced while either does."""
        if not addresses:
            return addresses
        others = [e.data for e in self._rest.get(entry.origin, {}).values() if e is not entry]
        first = self._first.get(entry.origin)
        if first is not None and first is not entry:
            others.append(first.data)
        if not others:
            return addresses
        return [a for a in addresses if not any(contains_address(d, a) for d in others)]
