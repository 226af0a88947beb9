"""Handshake replay protection: the last accepted TAI64N timestamp of every static key.

A responder refuses a handshake whose timestamp is not strictly newer than the last one it accepted
from the same static key (WireGuard's rule). Stores must keep timestamps across restarts; the relay
and client use a SQLite-backed store (`altmesh.state.SqliteReplayStore`).

A store may also have a freshness window (`freshness_bounds`): timestamps at or below its lower
bound, or above its upper bound, are refused whatever the store holds. The store may then forget
every key whose last accepted timestamp is at or below the lower bound, and stay bounded, without
weakening the rule: a replayed handshake carries a timestamp at most the last one accepted from its
key; if that entry was forgotten, the timestamp is at or below the lower bound and refused anyway.
The upper bound keeps entries from being set far in the future (where they would never age out).
"""

from __future__ import annotations

import heapq
from typing import Protocol

from altmesh.protocol.constants import E2E_REORDER_KEYS, E2E_REORDER_WINDOW


class ReplayStore(Protocol):
    """Where a responder keeps the last accepted handshake timestamp per initiator static key."""

    def last_timestamp(self, public_key: bytes) -> bytes | None:
        """The last accepted 12-byte TAI64N label for this key, or None if none was accepted."""
        ...

    def record_timestamp(self, public_key: bytes, tai64n: bytes) -> None:
        """Remember `tai64n` as the last accepted label for this key (durably, for real stores).

        A store that cannot record raises StoreUnavailable: the handshake is then refused."""
        ...

    def freshness_bounds(self) -> tuple[bytes, bytes] | None:
        """(oldest, newest): labels at or below `oldest` or above `newest` are refused (the
        store forgets keys whose last label is at or below `oldest`); None: no window."""
        ...


class MemoryReplayStore:
    """A ReplayStore in a dict: for tests and for nodes that accept no inbound handshakes."""

    def __init__(self) -> None:
        self._timestamps: dict[bytes, bytes] = {}

    def last_timestamp(self, public_key: bytes) -> bytes | None:
        return self._timestamps.get(public_key)

    def record_timestamp(self, public_key: bytes, tai64n: bytes) -> None:
        self._timestamps[public_key] = tai64n

    def freshness_bounds(self) -> tuple[bytes, bytes] | None:
        return None


def stale(store: ReplayStore, tai64n: bytes) -> str | None:
    """Why `tai64n` falls outside the store's freshness window, or None if it does not."""
    bounds = store.freshness_bounds()
    if bounds is None:
        return None
    oldest, newest = bounds
    if tai64n <= oldest:
        return "handshake timestamp is older than the responder's freshness window"
    if tai64n > newest:
        return "handshake timestamp is ahead of the responder's clock by more than its window"
    return None


def replay_refusal(store: ReplayStore, public_key: bytes, tai64n: bytes) -> str | None:
    """Record `tai64n` if it is acceptable for this key; otherwise why it is refused."""
    reason = stale(store, tai64n)
    if reason is not None:
        return reason
    last = store.last_timestamp(public_key)
    if last is not None and tai64n <= last:
        return (
            "handshake timestamp is not newer than the last accepted from this key "
            "(replayed or reordered handshake)"
        )
    store.record_timestamp(public_key, tai64n)
    return None


def check_and_record(store: ReplayStore, public_key: bytes, tai64n: bytes) -> bool:
    """Record `tai64n` if it is acceptable for this key; False if it is refused (a replay, or
    outside the store's freshness window)."""
    return replay_refusal(store, public_key, tai64n) is None


class ReorderWindow:
    """Replay check that tolerates slightly reordered handshakes (end-to-end sessions).

    A timestamp is accepted if it is newer than the newest accepted one (the store's rule), or if
    it is at most `window_seconds` older than that, newer than the store's value when this window
    first met the key (`floor`), and not accepted before (the in-memory `seen` set). Everything
    accepted above `floor` was accepted through this window and is in `seen`, so a replay is
    always refused, also after a restart (the floor then starts at the persisted value again).

    A service creates one window over its replay store and passes it to every end-to-end session
    it answers: the sessions must share it, or one would accept what another already did.
    """

    def __init__(
        self,
        store: ReplayStore,
        window_seconds: float = E2E_REORDER_WINDOW,
        max_keys: int = E2E_REORDER_KEYS,
    ) -> None:
        self.store = store
        self.window_ns = int(window_seconds * 1_000_000_000)
        self.max_keys = max_keys
        self._floor: dict[bytes, bytes | None] = {}
        self._seen: dict[bytes, set[bytes]] = {}
        # The same timestamps per key as a min-heap of (nanoseconds, label): the old ones are
        # dropped from the front, without a walk over every one kept.
        self._by_age: dict[bytes, list[tuple[int, bytes]]] = {}

    def check_and_record(self, public_key: bytes, tai64n: bytes) -> bool:
        """Record `tai64n` for this key if it is acceptable; False if it is a replay."""
        store = self.store
        if stale(store, tai64n) is not None:
            return False
        if public_key not in self._floor:
            if len(self._floor) >= self.max_keys:  # forget the oldest key: it restarts strictly
                oldest = next(iter(self._floor))
                del self._floor[oldest]
                self._seen.pop(oldest, None)
                self._by_age.pop(oldest, None)
            self._floor[public_key] = store.last_timestamp(public_key)
            self._seen[public_key] = set()
            self._by_age[public_key] = []
        floor = self._floor[public_key]
        seen = self._seen[public_key]
        if floor is not None and tai64n <= floor:
            return False
        if tai64n in seen:
            return False
        last = store.last_timestamp(public_key)
        nanoseconds = _nanoseconds(tai64n)
        if last is None or tai64n > last:
            store.record_timestamp(public_key, tai64n)
            last_ns = nanoseconds
        else:
            last_ns = _nanoseconds(last)
            if last_ns - nanoseconds > self.window_ns:
                return False
        seen.add(tai64n)
        by_age = self._by_age[public_key]
        heapq.heappush(by_age, (nanoseconds, tai64n))
        if len(seen) > 64:  # forget the timestamps the window refuses anyway
            oldest_kept = last_ns - self.window_ns
            while by_age and by_age[0][0] < oldest_kept:
                seen.discard(heapq.heappop(by_age)[1])
        return True


def _nanoseconds(tai64n: bytes) -> int:
    return int.from_bytes(tai64n[:8], "big") * 1_000_000_000 + int.from_bytes(tai64n[8:12], "big")
