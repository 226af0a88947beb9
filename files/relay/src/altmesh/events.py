"""Security events as JSON lines with stable field names (documented in docs/security-events.md).

One event per line: `{"time": ..., "event": ..., "node": ..., "reason": ..., "count": ..., ...}`.
Field names and event names never change meaning; new fields may be added. Nothing secret is ever
logged: public keys and addresses only.

A hostile peer must not be able to turn one record into one line, nor fill the disk:

- **Aggregation.** Occurrences are grouped by (event, reason, source): the `source` given to
  `emit`, else the `peer` field (one link). The first occurrence of a group is written at once
  (`count` 1); the others within `aggregate_seconds` are counted and written as one line when
  the interval ends (`count` = how many, `interval` = the seconds they cover, the fields of the
  last one). At most `max_groups` groups are tracked at once; occurrences beyond are dropped.
- **A global bound.** At most `max_lines_per_second` lines are written per second (a token
  bucket with `max_lines_burst`); lines beyond are dropped. Dropped occurrences are counted
  (`dropped`, `on_dropped`) and reported by one `events_dropped` line per interval. Every value
  is cut to MAX_FIELD_LEN characters, so a line is at most about MAX_LINE_LEN bytes and the file
  grows by at most `max_lines_per_second * MAX_LINE_LEN` bytes per second.
- **A full disk loses nothing silently.** A line that cannot be written (ENOSPC, EIO, ...) goes
  to stderr instead, is counted (`unwritten`, `on_unwritten`) and kept in a bounded backlog that
  is written first as soon as the file takes writes again. `emit` never raises OSError: in an
  event loop callback the exception would be dropped and the event lost with it.

Hooks: `on_event(event, reason)` for every occurrence (metrics count all of them, logged or
not); `on_record(record)` for every line written (or sent to stderr), e.g. a queue that ships
events elsewhere.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as _dt
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HANDSHAKE_FAILED = "handshake_failed"
KEY_REFUSED = "key_refused"
HANDSHAKE_REPLAYED = "handshake_replayed"
DECRYPTION_FAILED = "decryption_failed"
RATE_LIMITED = "rate_limited"
REKEY = "rekey"
KEY_ROTATION = "key_rotation"
PROTOCOL_VIOLATION = "protocol_violation"
E2E_REFUSED = "e2e_refused"
E2E_TRUNCATED = "e2e_truncated"
EVENTS_DROPPED = "events_dropped"
STATE_UNAVAILABLE = "state_unavailable"

EVENT_NAMES = (
    HANDSHAKE_FAILED,
    KEY_REFUSED,
    HANDSHAKE_REPLAYED,
    DECRYPTION_FAILED,
    RATE_LIMITED,
    REKEY,
    KEY_ROTATION,
    PROTOCOL_VIOLATION,
    E2E_REFUSED,
    E2E_TRUNCATED,
    EVENTS_DROPPED,
    STATE_UNAVAILABLE,
)

# Fields every event carries, in this order; others follow.
BASE_FIELDS = ("time", "event", "node", "reason", "count")

AGGREGATE_SECONDS = 10.0
MAX_LINES_PER_SECOND = 20.0
MAX_LINES_BURST = 200
MAX_GROUPS = 4096
MAX_BACKLOG_LINES = 10_000
MAX_FIELD_LEN = 512
MAX_LINE_LEN = 4096  # the base fields, a handful of fields of MAX_FIELD_LEN, JSON escapes aside


def event_for_protocol_error(error: BaseException, during_handshake: bool = False) -> str:
    """Which security event a fatal ProtocolError from the core stands for."""
    from altmesh.protocol import errors

    if isinstance(error, errors.EndToEndTruncated):
        return E2E_TRUNCATED
    if isinstance(error, errors.ReplayedHandshake):
        return HANDSHAKE_REPLAYED
    if isinstance(error, errors.KeyRefused):
        return KEY_REFUSED
    if during_handshake or isinstance(error, errors.HandshakeError | errors.HandshakeDecryptError):
        return HANDSHAKE_FAILED
    if isinstance(error, errors.DecryptError):
        return DECRYPTION_FAILED
    return PROTOCOL_VIOLATION


@dataclass
class _Group:
    """Occurrences of one (event, reason, source) within the current interval."""

    started: float  # monotonic time of the first occurrence (the one written at once)
    suppressed: int = 0  # occurrences since, not written yet
    last: dict[str, Any] = field(default_factory=dict)  # the last occurrence's record


def _clip(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= MAX_FIELD_LEN else text[: MAX_FIELD_LEN - 3] + "..."


class SecurityEventLog:
    """Writes security events to a file (appended) or to stderr; aggregated and bounded."""

    def __init__(
        self,
        path: Path | None,
        node: str,
        on_event: Callable[[str, str], None] | None = None,
        *,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
        on_unwritten: Callable[[int], None] | None = None,
        aggregate_seconds: float = AGGREGATE_SECONDS,
        max_lines_per_second: float = MAX_LINES_PER_SECOND,
        max_lines_burst: int = MAX_LINES_BURST,
        max_groups: int = MAX_GROUPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.node = node
        self.on_event = on_event
        self.on_record = on_record
        self.on_dropped = on_dropped
        self.on_unwritten = on_unwritten
        self.aggregate_seconds = aggregate_seconds
        self.max_lines_per_second = max_lines_per_second
        self.max_lines_burst = float(max_lines_burst)
        self.max_groups = max_groups
        self.clock = clock
        self.dropped = 0  # occurrences never written (global bound, group limit, backlog full)
        self.unwritten = 0  # lines the file refused (they went to stderr)
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._tokens = self.max_lines_burst
        self._tokens_at = clock()
        self._dropped_by_event: collections.Counter[str] = collections.Counter()
        self._dropped_since: float | None = None
        self._backlog: collections.deque[bytes] = collections.deque()
        self._backlog_lost = 0
        self._last_error: OSError = OSError("not written")
        self._timer: asyncio.TimerHandle | None = None
        self.reopen()

    # ---------------------------------------------------------------- the file
    def reopen(self) -> None:
        """(Re)open the file, e.g. after log rotation on SIGHUP."""
        with self._lock:
            self._close_fd()
            if self.path is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as error:
                self._stderr(f"cannot open {self.path}: {error}")

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    # ---------------------------------------------------------------- emitting
    def emit(
        self, event: str, reason: str = "", *, source: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """One occurrence of `event`; returns its record (written now, later, or not at all:
        see the module docstring). `source` groups occurrences (default: the `peer` field)."""
        reason = reason or event
        record: dict[str, Any] = {"time": _now_text(), "event": event, "node": self.node}
        record["reason"] = _clip(reason)
        record["count"] = 1
        for name, value in fields.items():
            if value is not None:
                record[name] = _clip(value)
        if self.on_event is not None:
            self.on_event(event, reason)
        key = (event, reason, source if source is not None else str(fields.get("peer") or ""))
        with self._lock:
            now = self.clock()
            self._flush_due(now)
            group = self._groups.get(key)
            if group is not None:
                group.suppressed += 1
                group.last = record
            elif len(self._groups) >= self.max_groups:
                self._drop(event, now)
            else:
                self._groups[key] = _Group(started=now)
                self._write_bounded(record, now)
            self._arm_timer()
        return record

    def flush(self) -> None:
        """Write the summaries of every interval that has ended (called by a timer)."""
        with self._lock:
            self._timer = None
            self._flush_due(self.clock())
            self._arm_timer()

    def close(self) -> None:
        """Write every pending summary (intervals cut short), then close the file."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            now = self.clock()
            for key in list(self._groups):
                self._end_group(key, now)
            self._report_dropped(now, force=True)
            self._retry_backlog()
            self._close_fd()

    # ---------------------------------------------------------------- internals
    def _flush_due(self, now: float) -> None:
        horizon = now - self.aggregate_seconds
        groups = self._groups
        # Groups are in the order they started (a dict keeps insertion order): stop at the
        # first one still running, so an emit costs O(1) however many groups are open.
        while groups:
            key, group = next(iter(groups.items()))
            if group.started > horizon:
                break
            self._end_group(key, now)
        self._report_dropped(now)
        if self._backlog:
            self._retry_backlog()

    def _end_group(self, key: tuple[str, str, str], now: float) -> None:
        group = self._groups.pop(key)
        if group.suppressed:
            summary = dict(group.last)
            summary["count"] = group.suppressed
            summary["interval"] = round(now - group.started, 3)
            self._write_bounded(summary, now, occurrences=group.suppressed)

    def _write_bounded(self, record: dict[str, Any], now: float, occurrences: int = 1) -> None:
        self._tokens = min(
            self.max_lines_burst,
            self._tokens + (now - self._tokens_at) * self.max_lines_per_second,
        )
        self._tokens_at = now
        if self._tokens < 1.0:
            self._drop(record["event"], now, occurrences)
            return
        self._tokens -= 1.0
        self._write(record)

    def _drop(self, event: str, now: float, occurrences: int = 1) -> None:
        self.dropped += occurrences
        self._dropped_by_event[event] += occurrences
        if self._dropped_since is None:
            self._dropped_since = now
        if self.on_dropped is not None:
            self.on_dropped(event, occurrences)

    def _report_dropped(self, now: float, force: bool = False) -> None:
        """One `events_dropped` line per interval while the bound drops lines (it bypasses the
        bound itself: it is what says the log is incomplete)."""
        since = self._dropped_since
        if since is None or (not force and now - since < self.aggregate_seconds):
            return
        counts, self._dropped_by_event = self._dropped_by_event, collections.Counter()
        self._dropped_since = None
        record: dict[str, Any] = {"time": _now_text(), "event": EVENTS_DROPPED, "node": self.node}
        record["reason"] = "rate_bound"
        record["count"] = sum(counts.values())
        record["interval"] = round(now - since, 3)
        record["detail"] = ", ".join(f"{name}: {n}" for name, n in counts.most_common(16))
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        line = _line(record)
        if self.on_record is not None:
            self.on_record(record)
        if self.path is None:
            self._stderr_line(line)
            return
        if self._backlog:
            self._retry_backlog()
        if self._backlog:  # the file still refuses writes: this line waits behind the others
            self._refused(line, self._last_error)
            self._keep(line)
        elif not self._write_file(line):
            self._keep(line)

    def _write_file(self, line: bytes) -> bool:
        """Write one whole line; False if the file refused it (nothing or part of it written:
        the rest is kept, so the file never holds half a line followed by another)."""
        if self._fd is None:
            self.reopen()
            if self._fd is None:
                return False
        try:
            written = os.write(self._fd, line)
        except OSError as error:
            self._refused(line, error)
            return False
        if written < len(line):
            self._refused(line, OSError(f"short write ({written} of {len(line)} bytes)"))
            self._backlog.appendleft(line[written:])
            return True  # the tail is in the backlog, ahead of everything else
        return True

    def _refused(self, line: bytes, error: OSError) -> None:
        self._last_error = error
        self.unwritten += 1
        if self.on_unwritten is not None:
            self.on_unwritten(1)
        self._stderr(f"security event not written to {self.path}: {error}; event follows")
        self._stderr_line(line)

    def _keep(self, line: bytes) -> None:
        if len(self._backlog) >= MAX_BACKLOG_LINES:
            self._backlog.popleft()
            self._backlog_lost += 1
            self.dropped += 1
        self._backlog.append(line)

    def _retry_backlog(self) -> None:
        """Write what the file refused earlier, oldest first; stop at the first refusal."""
        if self._fd is None:
            self.reopen()
            if self._fd is None:
                return
        while self._backlog:
            line = self._backlog[0]
            try:
                written = os.write(self._fd, line)
            except OSError as error:
                self._last_error = error
                return
            if written < len(line):
                self._backlog[0] = line[written:]
                return
            self._backlog.popleft()
        if self._backlog_lost:
            lost, self._backlog_lost = self._backlog_lost, 0
            record: dict[str, Any] = {
                "time": _now_text(),
                "event": EVENTS_DROPPED,
                "node": self.node,
                "reason": "write_failed",
                "count": lost,
                "detail": "lines that the file refused and that did not fit the backlog "
                "(they were written to stderr)",
            }
            self._write(record)

    def _arm_timer(self) -> None:
        """Summaries are due when an interval ends, also if no event comes after it."""
        if self._timer is not None or not (self._groups or self._dropped_since or self._backlog):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (tests, tools): summaries come with the next emit or close
        self._timer = loop.call_later(min(1.0, self.aggregate_seconds), self.flush)

    @staticmethod
    def _stderr(message: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"altmesh: {message}\n")
            sys.stderr.flush()

    @staticmethod
    def _stderr_line(line: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(line.decode("utf-8"))
            sys.stderr.flush()


def _line(record: dict[str, Any]) -> bytes:
    """The JSON line of a record, at most MAX_LINE_LEN bytes (escapes can make a clipped value
    six times longer: then every text value is cut shorter)."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
    if len(line) <= MAX_LINE_LEN:
        return line
    budget = MAX_LINE_LEN // (6 * max(1, len(record)))
    short = {
        name: value if not isinstance(value, str) or len(value) <= budget else value[:budget]
        for name, value in record.items()
    }
    return (json.dumps(short, separators=(",", ":")) + "\n").encode("utf-8")


def _now_text() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
