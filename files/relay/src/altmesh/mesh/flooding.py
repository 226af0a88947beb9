"""Flooding output: what each neighbor is still to be sent, and when (docs/routing.md section 4).

A neighbor's queue holds database entries, not bytes: an entry replaced by a newer version while
queued goes out as the newest, so a queue never holds two versions of one announcement and is
bounded by the database. A neighbor is sent to at most once per `flood_pacing`; a newer version
of one entry is flooded at most once per `min_flood_interval` (later ones wait, newest only).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable

from altmesh.mesh.config import RoutingConfig
from altmesh.mesh.constants import MAX_LIFETIME
from altmesh.mesh.lsdb import Entry
from altmesh.mesh.wire import pack_payloads, with_lifetime


class Flooding:
    def __init__(self, config: RoutingConfig) -> None:
        self._pacing = config.flood_pacing
        self._min_interval = config.min_flood_interval
        self.queues: dict[bytes, dict[Entry, None]] = {}  # per neighbor, in order
        self._next_send: dict[bytes, float] = {}  # per neighbor
        self._deferred: list[tuple[float, int, Entry]] = []  # floods held by min_flood_interval
        self._deferred_entries: set[Entry] = set()
        self._order = itertools.count()

    def add_neighbor(self, neighbor: bytes, database: Iterable[Entry], now: float) -> None:
        """A new neighbor: it is to be sent the whole database, at once."""
        self.queues[neighbor] = dict.fromkeys(database)
        self._next_send[neighbor] = now

    def remove_neighbor(self, neighbor: bytes) -> None:
        del self.queues[neighbor]
        del self._next_send[neighbor]

    def flood(self, entry: Entry, now: float, source: bytes | None) -> None:
        """Queue `entry` to every neighbor but `source` (which has it), or hold it back until
        min_flood_interval after the last time a version of it was flooded."""
        queues = self.queues
        if source is not None and source in queues:
            queues[source].pop(entry, None)
            if len(queues) == 1:
                return  # nobody else to tell
        elif not queues:
            return  # nobody to tell (a new neighbor gets the whole database anyway)
        due = entry.flooded_at + self._min_interval
        if now < due:
            if entry not in self._deferred_entries:
                self._deferred_entries.add(entry)
                heapq.heappush(self._deferred, (due, next(self._order), entry))
            return
        entry.flooded_at = now
        for neighbor, queue in queues.items():
            if neighbor != source:
                queue[entry] = None

    def flood_held_back(self, now: float) -> None:
        """Flood the versions whose min_flood_interval is over."""
        while self._deferred and self._deferred[0][0] <= now:
            _due, _n, entry = heapq.heappop(self._deferred)
            self._deferred_entries.discard(entry)
            if entry.live:
                self.flood(entry, now, entry.source)

    def deadline(self) -> float:
        """When there is something to send or flood next (inf: nothing pending)."""
        deadline = self._deferred[0][0] if self._deferred else float("inf")
        for neighbor, queue in self.queues.items():
            if queue:
                deadline = min(deadline, self._next_send[neighbor])
        return deadline

    def output(self, now: float) -> list[tuple[bytes, bytes]]:
        """(neighbor, payload) for every neighbor whose pacing allows a send now: the newest
        version of everything queued for it, with the lifetime it has left (an entry with less
        than a second left is dropped), packed into payloads of at most 65516 bytes."""
        out: list[tuple[bytes, bytes]] = []
        aged: dict[Entry, bytes] = {}  # each entry with its remaining lifetime, once per call
        for neighbor, queue in self.queues.items():
            if not queue or now < self._next_send[neighbor]:
                continue
            self._next_send[neighbor] = now + self._pacing
            announcements = []
            for entry in queue:
                data = aged.get(entry)
                if data is None:
                    remaining = entry.expires - now
                    if not entry.live or remaining < 1:
                        continue
                    data = aged[entry] = with_lifetime(
                        entry.data, min(int(remaining), MAX_LIFETIME)
                    )
                announcements.append(data)
            queue.clear()
            out.extend((neighbor, payload) for payload in pack_payloads(announcements))
        return out
