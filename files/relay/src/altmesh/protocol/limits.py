"""Limits on what a peer may make a link do (docs/protocol.md section 9, "Record limits").

Records that carry no stream data cost a receiver work (a decryption, a parse, a table lookup)
but nothing bounds how many a peer sends: a PING flood, WINDOW records for streams that are
already gone, unsolicited PONGs, rekeys back to back, streams opened and reset in a loop. Each
such class of record has a token bucket per link, refilled at `rate` per second up to `burst`;
a record that finds its bucket empty fails the link (`ControlFlood`, kind `control_flood`). The
defaults are far above what a conforming implementation sends (the reference implementation
sends a PING every few seconds, rekeys every 120 s and WINDOW only for live streams), so only a
peer that abuses the protocol meets them.

Time is passed in (`now`, monotonic seconds), like everywhere in the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from altmesh.protocol.errors import ControlFlood, InvalidArgument


@dataclass(frozen=True)
class RecordLimit:
    """A token bucket: `rate` records per second, at most `burst` at once."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise InvalidArgument("a record limit needs rate > 0 and burst >= 1")


# WINDOW increments below this carry next to no credit: such records count as idle.
MIN_USEFUL_WINDOW_INCREMENT = 1024


@dataclass(frozen=True)
class ControlLimits:
    """The per-link limits; `LinkConfig.control_limits` (relay-to-relay links may need more)."""

    # PING records (the reference implementation pings every 5 s, mesh probes every 0.5 s).
    pings: RecordLimit = field(default_factory=lambda: RecordLimit(50.0, 200))
    # PONG records that answer no PING of ours.
    unsolicited_pongs: RecordLimit = field(default_factory=lambda: RecordLimit(2.0, 32))
    # Rekeys the peer starts (REKEY_INIT); one is due every rekey_after_time (>= 1 s).
    rekeys: RecordLimit = field(default_factory=lambda: RecordLimit(2.0, 16))
    # OPEN and RESET records: streams opened and aborted.
    stream_churn: RecordLimit = field(default_factory=lambda: RecordLimit(2000.0, 8192))
    # Records that change nothing: DATA, WINDOW, FIN or RESET for a finished stream, empty DATA,
    # WINDOW of less than MIN_USEFUL_WINDOW_INCREMENT bytes, and empty transport messages
    # (keepalives, one every keepalive_interval from a conforming peer).
    idle_records: RecordLimit = field(default_factory=lambda: RecordLimit(2048.0, 8192))


class _Bucket:
    __slots__ = ("burst", "name", "rate", "tokens", "updated")

    def __init__(self, name: str, limit: RecordLimit) -> None:
        self.name = name
        self.rate = limit.rate
        self.burst = float(limit.burst)
        self.tokens = self.burst
        self.updated: float | None = None

    def spend(self, now: float) -> None:
        updated = self.updated
        if updated is not None and now > updated:
            self.tokens = min(self.burst, self.tokens + (now - updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            raise ControlFlood(
                f"more {self.name} than allowed ({self.rate:g} per second, bursts of "
                f"{self.burst:g})"
            )
        self.tokens -= 1.0


class ControlBudget:
    """The token buckets of one link."""

    __slots__ = ("idle", "pings", "rekeys", "stream_churn", "unsolicited_pongs")

    def __init__(self, limits: ControlLimits) -> None:
        self.pings = _Bucket("PING records", limits.pings)
        self.unsolicited_pongs = _Bucket("unsolicited PONG records", limits.unsolicited_pongs)
        self.rekeys = _Bucket("rekeys started by the peer", limits.rekeys)
        self.stream_churn = _Bucket("OPEN and RESET records", limits.stream_churn)
        self.idle = _Bucket("records that change nothing", limits.idle_records)
