"""Persistent node state in SQLite under the state directory.

Holds what must survive a restart: the last accepted handshake timestamp (TAI64N) of every
static key, so a recorded handshake cannot be replayed after the relay restarts, and counters.
A relay also keeps the mesh peers it learned from DNS (used until DNS answers again) and the
sequence number of its routing announcements (saved before each one is sent).

The schema is versioned (`meta.schema_version`): an older database is brought up to date when it
is opened; a newer one (written by a later altmesh) is refused with StateSchemaError.

The timestamps are bounded by a freshness window (docs/protocol.md section 4.5): handshakes whose
timestamp is more than `freshness_seconds` from this node's wall clock are refused, so every key
whose last timestamp is older than that can be (and is) forgotten, in memory and on disk.

A write that fails (a full disk, an I/O error) never escapes as a traceback: it is counted
(`write_failures`, `on_write_failure`), reported once per interval on stderr through the
`altmesh.state` logger, and the handshake that needed it is refused (`StoreUnavailable`).
Counters that could not be saved are kept and saved with the next write that succeeds.
"""

from __future__ import annotations

import collections
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from altmesh.protocol import StoreUnavailable, tai64n
from altmesh.protocol.constants import HANDSHAKE_FRESHNESS

log = logging.getLogger("altmesh.state")

SCHEMA = """
CREATE TABLE IF NOT EXISTS handshake_timestamps (
    public_key BLOB PRIMARY KEY,
    tai64n     BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS handshake_timestamps_by_age ON handshake_timestamps(tai64n);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
# Version 2: the relay's mesh peers learned from DNS, and its routing sequence number (in meta).
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS mesh_peers (
    public_key  BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    other_keys  BLOB NOT NULL,   -- further 32-byte keys of the peer (rotation), concatenated
    endpoints   TEXT NOT NULL,   -- JSON list of "HOST:PORT"
    learned_at  REAL NOT NULL
);
"""
SCHEMA_VERSION = "2"


class StateSchemaError(Exception):
    """The state database was written by a newer altmesh (a schema this one does not know)."""


@dataclass(frozen=True)
class StoredPeer:
    """A mesh peer learned from DNS, as saved: its keys (current first), name and endpoints."""

    name: str
    public_keys: tuple[bytes, ...]
    endpoints: tuple[str, ...]


# A failing database is reported on stderr at most this often (every failure is counted).
REPORT_INTERVAL = 10.0
# Keys whose timestamps left the freshness window are forgotten this often (or every half window).
PRUNE_INTERVAL = 30.0


class StateDB:
    """The node's SQLite database (WAL mode; one connection, used from the event loop thread)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        on_write_failure: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "state.sqlite3"
        self.on_write_failure = on_write_failure
        self.clock = clock
        self.write_failures = 0
        self._reported_at: float | None = None
        self._unreported = 0
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only power loss may lose the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '1')")
        self._migrate()

    def _migrate(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0])
        if version > int(SCHEMA_VERSION):
            self.db.close()
            raise StateSchemaError(
                f"{self.path}: schema version {version} is newer than this altmesh's "
                f"({SCHEMA_VERSION}); use the altmesh version that wrote it, or a new state_dir"
            )
        if version < 2:
            with self.db:
                self.db.execute("BEGIN")
                for statement in SCHEMA_V2.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")

    def close(self) -> None:
        self.db.close()

    def write(self, what: str, sql: str, parameters: tuple[object, ...] = ()) -> bool:
        """Run one writing statement; False (counted and reported) if the database refused."""
        try:
            self.db.execute(sql, parameters)
        except sqlite3.Error as error:
            self.failed(what, error)
            return False
        return True

    def failed(self, what: str, error: sqlite3.Error) -> None:
        self.write_failures += 1
        if self.on_write_failure is not None:
            self.on_write_failure()
        now = self.clock()
        if self._reported_at is not None and now - self._reported_at < REPORT_INTERVAL:
            self._unreported += 1
            return
        more = (
            f" ({self._unreported} more failures since the last report)" if self._unreported else ""
        )
        log.error("state database %s: cannot %s: %s%s", self.path, what, error, more)
        self._reported_at = now
        self._unreported = 0

    def add_counters(self, counts: Mapping[str, int]) -> bool:
        """Add to the persistent totals in one transaction; False if they could not be saved
        (the caller keeps them for the next try)."""
        try:
            with self.db:
                self.db.execute("BEGIN")
                for name, delta in counts.items():
                    self.db.execute(
                        "INSERT INTO counters(name, value) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                        (name, delta),
                    )
        except sqlite3.Error as error:
            self.failed("save counters", error)
            return False
        return True

    def add_counter(self, name: str, delta: int) -> bool:
        return self.add_counters({name: delta})

    def counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- the relay's mesh

    def mesh_peers(self) -> list[StoredPeer]:
        """The mesh peers saved by the last `replace_mesh_peers`, by name."""
        rows = self.db.execute(
            "SELECT public_key, other_keys, name, endpoints FROM mesh_peers ORDER BY name"
        ).fetchall()
        peers = []
        for key, others, name, endpoints in rows:
            more = bytes(others)
            keys = (bytes(key), *(more[i : i + 32] for i in range(0, len(more), 32)))
            peers.append(StoredPeer(name, keys, tuple(json.loads(endpoints))))
        return peers

    def replace_mesh_peers(self, peers: Iterable[StoredPeer]) -> bool:
        """Save the peers learned from DNS in place of the ones saved before (one transaction);
        False (counted and reported) if the database refused."""
        now = time.time()
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.execute("DELETE FROM mesh_peers")
                for peer in peers:
                    self.db.execute(
                        "INSERT OR REPLACE INTO mesh_peers"
                        "(public_key, name, other_keys, endpoints, learned_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (
                            peer.public_keys[0],
                            peer.name,
                            b"".join(peer.public_keys[1:]),
                            json.dumps(list(peer.endpoints)),
                            now,
                        ),
                    )
        except sqlite3.Error as error:
            self.failed("save the mesh peers learned from DNS", error)
            return False
        return True

    def route_sequence(self) -> int:
        """The highest routing sequence number this relay has used (0 before the first)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'route_sequence'").fetchone()
        return int(row[0]) if row else 0

    def save_route_sequence(self, sequence: int) -> bool:
        """Save the sequence number before anything that carries it is sent; False (counted
        and reported) if the database refused."""
        return self.write(
            "save the routing sequence number",
            "INSERT INTO meta(key, value) VALUES ('route_sequence', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(sequence),),
        )


class SqliteReplayStore:
    """`altmesh.protocol.replay.ReplayStore` backed by SQLite, so timestamps survive restarts,
    with a freshness window of `freshness_seconds` against `wallclock` (Unix seconds)."""

    def __init__(
        self,
        state: StateDB,
        *,
        freshness_seconds: float = HANDSHAKE_FRESHNESS,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.freshness_seconds = freshness_seconds
        self.wallclock = wallclock
        # The newest labels, in the order they were recorded (oldest first): pruned from the front.
        self._cache: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self._pruned_at: float | None = None

    def freshness_bounds(self) -> tuple[bytes, bytes]:
        now = self.wallclock()
        return tai64n(now - self.freshness_seconds), tai64n(now + self.freshness_seconds)

    def last_timestamp(self, public_key: bytes) -> bytes | None:
        self._prune_if_due()
        cached = self._cache.get(public_key)
        if cached is not None:
            return cached
        row = self.state.db.execute(
            "SELECT tai64n FROM handshake_timestamps WHERE public_key = ?", (public_key,)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    def record_timestamp(self, public_key: bytes, tai64n_label: bytes) -> None:
        recorded = self.state.write(
            "record a handshake timestamp",
            "INSERT INTO handshake_timestamps(public_key, tai64n, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(public_key) DO UPDATE SET tai64n = excluded.tai64n, "
            "updated_at = excluded.updated_at",
            (public_key, tai64n_label, self.wallclock()),
        )
        if not recorded:
            raise StoreUnavailable(
                f"cannot record the handshake timestamp in {self.state.path} (see stderr)"
            )
        self._cache.pop(public_key, None)
        self._cache[public_key] = tai64n_label

    def __len__(self) -> int:
        """Keys remembered on disk."""
        row = self.state.db.execute("SELECT COUNT(*) FROM handshake_timestamps").fetchone()
        return int(row[0])

    def _prune_if_due(self) -> None:
        now = self.state.clock()
        interval = min(PRUNE_INTERVAL, self.freshness_seconds / 2)
        if self._pruned_at is not None and now - self._pruned_at < interval:
            return
        self._pruned_at = now
        self.prune()

    def prune(self) -> int:
        """Forget every key whose last timestamp left the freshness window; returns how many
        were forgotten on disk."""
        oldest, _newest = self.freshness_bounds()
        cache = self._cache
        # Labels enter the cache roughly in time order; one stepped back by a clock is kept a
        # little longer, which is safe (forgetting is what needs the bound, keeping never does).
        while cache:
            key, label = next(iter(cache.items()))
            if label > oldest:
                break
            del cache[key]
        try:
            cursor = self.state.db.execute(
                "DELETE FROM handshake_timestamps WHERE tai64n <= ?", (oldest,)
            )
        except sqlite3.Error as error:
            self.state.failed("forget old handshake timestamps", error)
            return 0
        return int(cursor.rowcount)
