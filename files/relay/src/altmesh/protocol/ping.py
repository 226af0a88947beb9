"""PING / PONG (docs/protocol.md section 9): round-trip times, and the bound on answers.

We remember at most MAX_UNANSWERED_PINGS of our own PINGs (the oldest is forgotten first). A peer
that floods PINGs and never reads would make us queue PONGs without end, so at most
MAX_UNSENT_PONGS are answered between two writes to the socket; the rest are dropped.
"""

from __future__ import annotations

import enum
import os

from altmesh.protocol import constants as C


class PingAnswer(enum.Enum):
    ANSWER = "answer"
    FLOOD = "flood"  # the first PING over the bound: report it once
    DROP = "drop"


class PingTracker:
    """Our PINGs in flight and the PONGs we owe."""

    __slots__ = ("_sent", "_unsent_pongs")

    def __init__(self) -> None:
        self._sent: dict[bytes, float] = {}
        self._unsent_pongs = 0

    def new_ping(self, now: float) -> bytes:
        """The id of a PING sent at `now`."""
        ping_id = os.urandom(C.PING_ID_LEN)
        if len(self._sent) >= C.MAX_UNANSWERED_PINGS:  # keep only the newest
            self._sent.pop(next(iter(self._sent)))
        self._sent[ping_id] = now
        return ping_id

    def on_pong(self, ping_id: bytes, now: float) -> float | None:
        """The round-trip time of the PING this PONG answers; None if it answers none of ours."""
        sent = self._sent.pop(ping_id, None)
        if sent is None:
            return None
        return max(0.0, now - sent)

    def on_ping(self) -> PingAnswer:
        """Whether the peer's PING gets its PONG."""
        if self._unsent_pongs < C.MAX_UNSENT_PONGS:
            self._unsent_pongs += 1
            return PingAnswer.ANSWER
        if self._unsent_pongs == C.MAX_UNSENT_PONGS:
            self._unsent_pongs += 1
            return PingAnswer.FLOOD
        return PingAnswer.DROP

    def written(self) -> None:
        """Everything queued went to the socket: PONGs may be owed again."""
        self._unsent_pongs = 0
