"""Persistent node state in SQLite under the state directory.

Holds what must survive a restart: the last accepted handshake timestamp (TAI64N) of every
static key, so a recorded handshake cannot be replayed after the relay restarts, and counters.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS handshake_timestamps (
    public_key BLOB PRIMARY KEY,
    tai64n     BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
SCHEMA_VERSION = "1"


class StateDB:
    """The node's SQLite database (WAL mode; one connection, used from the event loop thread)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "state.sqlite3"
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only power loss may lose the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
        )

    def close(self) -> None:
        self.db.close()

    def add_counter(self, name: str, delta: int) -> None:
        self.db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, delta),
        )

    def counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0


class SqliteReplayStore:
    """`altmesh.protocol.replay.ReplayStore` backed by SQLite, so timestamps survive restarts."""

    def __init__(self, state: StateDB) -> None:
        self.state = state
        self._cache: dict[bytes, bytes] = {}

    def last_timestamp(self, public_key: bytes) -> bytes | None:
        cached = self._cache.get(public_key)
        if cached is not None:
            return cached
        row = self.state.db.execute(
            "SELECT tai64n FROM handshake_timestamps WHERE public_key = ?", (public_key,)
        ).fetchone()
        if row is None:
            return None
        self._cache[public_key] = bytes(row[0])
        return self._cache[public_key]

    def record_timestamp(self, public_key: bytes, tai64n: bytes) -> None:
        self._cache[public_key] = tai64n
        self.state.db.execute(
            "INSERT INTO handshake_timestamps(public_key, tai64n, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(public_key) DO UPDATE SET tai64n = excluded.tai64n, "
            "updated_at = excluded.updated_at",
            (public_key, tai64n, time.time()),
        )
