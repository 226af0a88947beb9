"""Handshake replay protection: the last accepted TAI64N timestamp of every static key.

A responder refuses a handshake whose timestamp is not strictly newer than the last one it accepted
from the same static key (WireGuard's rule). Stores must keep timestamps across restarts; the relay
and client use a SQLite-backed store (`altmesh.state.SqliteReplayStore`).
"""

from __future__ import annotations

from typing import Protocol


class ReplayStore(Protocol):
    """Where a responder keeps the last accepted handshake timestamp per initiator static key."""

    def last_timestamp(self, public_key: bytes) -> bytes | None:
        """The last accepted 12-byte TAI64N label for this key, or None if none was accepted."""
        ...

    def record_timestamp(self, public_key: bytes, tai64n: bytes) -> None:
        """Remember `tai64n` as the last accepted label for this key (durably, for real stores)."""
        ...


class MemoryReplayStore:
    """A ReplayStore in a dict: for tests and for nodes that accept no inbound handshakes."""

    def __init__(self) -> None:
        self._timestamps: dict[bytes, bytes] = {}

    def last_timestamp(self, public_key: bytes) -> bytes | None:
        return self._timestamps.get(public_key)

    def record_timestamp(self, public_key: bytes, tai64n: bytes) -> None:
        self._timestamps[public_key] = tai64n


def check_and_record(store: ReplayStore, public_key: bytes, tai64n: bytes) -> bool:
    """Record `tai64n` if it is newer than the last one for this key; False if it is a replay."""
    last = store.last_timestamp(public_key)
    if last is not None and tai64n <= last:
        return False
    store.record_timestamp(public_key, tai64n)
    return True


class ReorderWindow:
    """Replay check that tolerates slightly reordered handshakes (end-to-end sessions).

    A timestamp is accepted if it is newer than the newest accepted one (the store's rule), or if
    it is at most `window` seconds older than that, newer than the store's value when this process
    first met the key (`floor`), and not accepted before (the in-memory `seen` set). Everything
    accepted above `floor` was accepted by this process and is in `seen`, so a replay is always
    refused, also after a restart (the floor then starts at the persisted value again).
    """

    def __init__(self, window_seconds: float, max_keys: int) -> None:
        self.window_ns = int(window_seconds * 1_000_000_000)
        self.max_keys = max_keys
        self._floor: dict[bytes, bytes | None] = {}
        self._seen: dict[bytes, set[bytes]] = {}

    def check_and_record(self, store: ReplayStore, public_key: bytes, tai64n: bytes) -> bool:
        if public_key not in self._floor:
            if len(self._floor) >= self.max_keys:  # forget the oldest key: it restarts strictly
                oldest = next(iter(self._floor))
                del self._floor[oldest]
                self._seen.pop(oldest, None)
            self._floor[public_key] = store.last_timestamp(public_key)
            self._seen[public_key] = set()
        floor = self._floor[public_key]
        seen = self._seen[public_key]
        if floor is not None and tai64n <= floor:
            return False
        if tai64n in seen:
            return False
        last = store.last_timestamp(public_key)
        if last is None or tai64n > last:
            store.record_timestamp(public_key, tai64n)
            last = tai64n
        elif _nanoseconds(last) - _nanoseconds(tai64n) > self.window_ns:
            return False
        seen.add(tai64n)
        oldest_kept = _nanoseconds(last) - self.window_ns
        if len(seen) > 64:
            seen.difference_update({t for t in seen if _nanoseconds(t) < oldest_kept})
        return True


def _nanoseconds(tai64n: bytes) -> int:
    return int.from_bytes(tai64n[:8], "big") * 1_000_000_000 + int.from_bytes(tai64n[8:12], "big")
