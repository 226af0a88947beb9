"""Storing a relay's heartbeat: the hot path of the API (every relay, every few seconds).

One heartbeat is one SELECT (the token and its relay together), one UPDATE of the relay's row,
one history INSERT and one commit; the attachments are rewritten only when the attached set
changed, and the history is trimmed on one heartbeat in TRIM_EVERY, at random.

What a profile of the benchmark's load (bench/bench_dashboard.py) found, per heartbeat on
SQLite, and what was done about it (docs/benchmarks.md has the figures):
- ORM `update(Relay).values(...)` / `insert(Heartbeat).values(...)` built per request: about
  80% of the time went to building, cache-keying and synchronising ORM statements. Replaced by
  statements built once.
- Core statements through a SQLAlchemy Connection still cost about 100 µs each in execution
  machinery, several times the database's own work (the whole heartbeat is ~0.1 ms of SQLite).
  So these statements are compiled once per engine and run on the driver's cursor
  (`driver_sql`), with SQLAlchemy's type conversions.
- The token check is one indexed lookup by SHA-256 (tokens are 256 random bits: no slow KDF).
- Request parsing and validation (pydantic, JSON) measured ~15 µs: left as it is.
- On SQLite, threads of one process writing at once (gthread workers) would meet in SQLite's
  busy handler, which sleeps 1, 2, 5, 10... ms between tries: they take turns on a lock of
  this process instead (`writing`), so only the few processes contend for the file's lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, delete, insert, select, update

from altmesh_dashboard.driver_sql import DriverStatement, DriverStatements
from altmesh_dashboard.models import ApiToken, Attachment, Base, Heartbeat, Relay
from altmesh_dashboard.payloads import HeartbeatReport

TRIM_EVERY = 50  # heartbeats between history trims (on average), to keep the hot path cheap

_tokens = Base.metadata.tables[ApiToken.__tablename__]
_relays = Base.metadata.tables[Relay.__tablename__]
_history = Base.metadata.tables[Heartbeat.__tablename__]
_attachments = Base.metadata.tables[Attachment.__tablename__]

COUNTERS = ("load", "active_streams", "bytes_in", "bytes_out", "version", "links")

STATEMENTS = DriverStatements(
    {
        # The caller's token and its relay's row, in one round trip.
        "caller": (
            select(
                _tokens.c.relay_name,
                _tokens.c.revoked_at,
                _tokens.c.kind,
                _relays.c.id,
                _relays.c.published_weight,
                _relays.c.weight_published_at,
                _relays.c.attached_digest,
            )
            .select_from(_tokens.outerjoin(_relays, _relays.c.name == _tokens.c.relay_name))
            .where(_tokens.c.token_hash == bindparam("token_hash")),
            None,
        ),
        "update_relay": (
            update(_relays).where(_relays.c.id == bindparam("relay_id")),
            ("last_heartbeat_at", *COUNTERS),
        ),
        "update_relay_and_digest": (
            update(_relays).where(_relays.c.id == bindparam("relay_id")),
            ("last_heartbeat_at", *COUNTERS, "attached_digest"),
        ),
        "insert_history": (insert(_history), ("relay_id", "received_at", *COUNTERS)),
        "delete_attached": (
            delete(_attachments).where(_attachments.c.relay_id == bindparam("relay_id")),
            None,
        ),
        "insert_attached": (insert(_attachments), ("relay_id", "address")),
        "trim_cutoff": (
            select(_history.c.id)
            .where(_history.c.relay_id == bindparam("relay_id"))
            .order_by(_history.c.id.desc())
            .offset(bindparam("keep"))
            .limit(1),
            None,
        ),
        "trim": (
            delete(_history).where(
                _history.c.relay_id == bindparam("relay_id"), _history.c.id <= bindparam("cutoff")
            ),
            None,
        ),
    }
)


@dataclass(frozen=True)
class Caller:
    """What the heartbeat needs of the token's row and its relay's (relay_id None: the relay is
    not registered)."""

    relay_name: str | None
    revoked: bool
    kind: str
    relay_id: int | None
    published_weight: int | None
    weight_published_at: dt.datetime | None
    attached_digest: str | None


_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_write_locks_lock = threading.Lock()


def _write_lock(engine: Engine) -> AbstractContextManager[Any]:
    """This process's turn to write to a SQLite engine (a no-op for other databases, whose
    row locks let writers of different relays proceed together)."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    lock = _write_locks.get(engine)
    if lock is None:
        with _write_locks_lock:
            lock = _write_locks.setdefault(engine, threading.Lock())
    return lock


class HeartbeatStore:
    """One heartbeat's database work on one pooled driver connection: `find_caller`, then
    `store` and `commit` inside `writing()`; `close` returns the connection to the pool
    (rolling back anything not committed)."""

    def __init__(self, engine: Engine) -> None:
        self._write_lock = _write_lock(engine)
        self._connection = engine.raw_connection()
        try:
            self._statements = STATEMENTS.for_engine(engine)  # after the first connect
            self._cursor = self._connection.cursor()
        except BaseException:
            self._connection.close()
            raise

    def __enter__(self) -> HeartbeatStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def commit(self) -> None:
        self._connection.commit()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around `store` and `commit`: on SQLite, one thread of this process writes at a time;
        what was not committed is rolled back before the next may write."""
        with self._write_lock:
            try:
                yield
            except BaseException:
                self._connection.rollback()
                raise

    def _run(self, name: str, values: dict[str, Any]) -> DriverStatement:
        statement = self._statements[name]
        self._cursor.execute(statement.sql, statement.parameters(values))
        return statement

    def find_caller(self, token_hash: str) -> Caller | None:
        statement = self._run("caller", {"token_hash": token_hash})
        raw = self._cursor.fetchone()
        if raw is None:
            return None
        relay_name, revoked_at, kind, relay_id, weight, weight_at, digest = statement.row(raw)
        return Caller(
            relay_name=relay_name,
            revoked=revoked_at is not None,
            kind=kind,
            relay_id=relay_id,
            published_weight=weight,
            weight_published_at=weight_at,
            attached_digest=digest,
        )

    def store(
        self, caller: Caller, report: HeartbeatReport, now: dt.datetime, history_kept: int
    ) -> None:
        """Write one heartbeat of a registered relay (then `commit`)."""
        relay_id = caller.relay_id
        assert relay_id is not None
        counters: dict[str, Any] = {
            "load": report.load,
            "active_streams": report.active_streams,
            "bytes_in": report.bytes_in,
            "bytes_out": report.bytes_out,
            "version": report.version,
            "links": sorted_links(report),
        }
        relay_values = {"relay_id": relay_id, "last_heartbeat_at": now, **counters}
        digest = attached_digest(report.attached)
        if digest != caller.attached_digest:
            self._run("delete_attached", {"relay_id": relay_id})
            if report.attached:
                self._run_many(
                    "insert_attached",
                    [{"relay_id": relay_id, "address": address} for address in report.attached],
                )
            self._run("update_relay_and_digest", {**relay_values, "attached_digest": digest})
        else:
            self._run("update_relay", relay_values)
        self._run("insert_history", {"relay_id": relay_id, "received_at": now, **counters})
        # Trim now and then, at random: ids are shared by all relays, so "every 50th id" could
        # forever miss a relay whose heartbeats interleave with others' in a fixed pattern.
        if random.random() < 1 / TRIM_EVERY:
            self.trim_history(relay_id, history_kept)

    def _run_many(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        statement = self._statements[name]
        self._cursor.executemany(statement.sql, [statement.parameters(row) for row in rows])

    def trim_history(self, relay_id: int, keep: int) -> None:
        """Keep only the `keep` newest history rows of one relay."""
        self._run("trim_cutoff", {"relay_id": relay_id, "keep": keep})
        found = self._cursor.fetchone()
        if found is not None:
            self._run("trim", {"relay_id": relay_id, "cutoff": found[0]})


def attached_digest(attached: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(attached)).encode()).hexdigest()


def sorted_links(report: HeartbeatReport) -> list[dict[str, Any]]:
    """The links as stored and shown: sorted by peer, each `{peer, state, rtt_ms}`."""
    return sorted(
        ({"peer": link.peer, "state": link.state, "rtt_ms": link.rtt_ms} for link in report.links),
        key=lambda link: str(link["peer"]),
    )
