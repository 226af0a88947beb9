"""A bounded on-disk queue of security events waiting to be delivered to the dashboard.

SQLite in the node's state directory (`dashboard-events.sqlite3`, WAL mode, `synchronous=NORMAL`:
a committed event survives a process crash or `kill -9`; only a power loss may lose the last
commits). Events are kept in the order they were queued; each gets its id when it is queued,
`<queue id>-<sequence number>`, which never changes afterwards, so a batch sent again after a
timeout or a restart carries the same ids and the dashboard stores each event once. The sequence
is SQLite's AUTOINCREMENT (never reused, even after deletes); the queue id is random, made when
the file is made, so the ids of a new file (the old one lost or moved aside) never collide with
ids the dashboard already stored.

Bounded: at most `max_events` events. Queuing more drops the oldest; dropped events are counted
(`dropped_total`, kept in the file) and the count not yet reported is kept too, for the caller to
report (`report_drops` turns it into one `events_dropped` event of its own).

One connection, used by several threads under one lock; every call is short (no call waits on
anything but the disk).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("altmesh.eventqueue")

FILE_NAME = "dashboard-events.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class QueuedEvent:
    seq: int
    id: str
    body: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """The event as the dashboard's API takes it: its body with its id."""
        return {"id": self.id, **self.body}


class EventQueue:
    """The queue file of one node; `close()` when done."""

    def __init__(
        self,
        state_dir: Path,
        max_events: int,
        *,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / FILE_NAME
        self.max_events = max_events
        self.on_dropped = on_dropped
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as error:
            # A file that is not a database (or is damaged) must not stop the relay: it is
            # kept aside for a person to look at, and a new queue starts.
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            log.error(
                "%s cannot be read (%s): moved to %s; starting a new queue", self.path, error, aside
            )
            for suffix in ("", "-wal", "-shm"):
                source = Path(str(self.path) + suffix)
                if source.exists():
                    os.replace(source, Path(str(aside) + suffix))
            self._db = self._open()
        self.queue_id = self._meta("queue_id")
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('queue_id', ?)",
                    (secrets.token_hex(6),),
                )
                for key in ("dropped_total", "dropped_unreported"):
                    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, '0')", (key,))
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    # ------------------------------------------------------------------ state
    @property
    def depth(self) -> int:
        """Events waiting."""
        return self._depth

    @property
    def dropped_total(self) -> int:
        """Events dropped because the queue was full, since the file was made."""
        with self._lock:
            return int(self._meta("dropped_total"))

    def event_id(self, seq: int) -> str:
        return f"{self.queue_id}-{seq:012d}"

    # ------------------------------------------------------------------ writing
    def put_many(self, bodies: Sequence[dict[str, Any]]) -> None:
        """Queue events (in order), dropping the oldest beyond `max_events`, in one transaction.

        Raises sqlite3.Error (a full disk, an I/O error) with nothing queued: the caller keeps
        the events and tries again."""
        if not bodies:
            return
        texts = [(json.dumps(body, separators=(",", ":"), ensure_ascii=False),) for body in bodies]
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO events(body) VALUES (?)", texts)
                excess = self._depth + len(texts) - self.max_events
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM events WHERE seq IN "
                        "(SELECT seq FROM events ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                    self._add_drops(excess)
            self._depth = min(self.max_events, self._depth + len(texts))
        if excess > 0 and self.on_dropped is not None:
            self.on_dropped(excess)

    def _add_drops(self, count: int) -> None:
        for key in ("dropped_total", "dropped_unreported"):
            self._db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = ?", (count, key)
            )

    def report_drops(self, make_event: Callable[[int], dict[str, Any]]) -> int:
        """If events were dropped since the last report, queue `make_event(count)` (an
        `events_dropped` event) and clear the count, in one transaction; returns the count."""
        with self._lock:
            count = int(self._meta("dropped_unreported"))
            if count <= 0:
                return 0
            body = json.dumps(make_event(count), separators=(",", ":"), ensure_ascii=False)
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO events(body) VALUES (?)", (body,))
                self._db.execute("UPDATE meta SET value = '0' WHERE key = 'dropped_unreported'")
                self._depth += 1
                excess = self._depth - self.max_events
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM events WHERE seq IN "
                        "(SELECT seq FROM events ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                    self._add_drops(excess)
                    self._depth -= excess
        return count

    # ------------------------------------------------------------------ reading
    def peek(self, limit: int) -> list[QueuedEvent]:
        """The oldest `limit` events (they stay queued until `remove`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM events ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [
            QueuedEvent(int(seq), self.event_id(int(seq)), json.loads(body)) for seq, body in rows
        ]

    def remove(self, seqs: Iterable[int]) -> None:
        """Forget delivered events (those already gone, dropped meanwhile, are skipped)."""
        numbers = [(seq,) for seq in seqs]
        if not numbers:
            return
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM events WHERE seq = ?", numbers)
            self._depth = int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
