"""Per-stream state of a link: credit in both directions and half-close flags.

Credit-based flow control (docs/protocol.md section 7): the sender may send `send_credit` more
bytes; the receiver lets the peer send `receive_credit` more and returns credit with WINDOW records
as the application acknowledges what it consumed.
"""

from __future__ import annotations


class StreamState:
    """Flow-control state of one stream."""

    __slots__ = (
        "acked",
        "grant_pending",
        "local_fin",
        "receive_credit",
        "received",
        "remote_fin",
        "send_credit",
        "stream_id",
        "wants_writable",
    )

    def __init__(self, stream_id: int, send_credit: int, receive_credit: int) -> None:
        self.stream_id = stream_id
        self.send_credit = send_credit  # bytes we may still send
        self.receive_credit = receive_credit  # bytes the peer may still send
        self.received = 0  # bytes received in total
        self.acked = 0  # of which the application acknowledged
        self.grant_pending = 0  # acknowledged bytes not yet returned as credit
        self.local_fin = False
        self.remote_fin = False
        self.wants_writable = False
