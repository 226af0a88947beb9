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
