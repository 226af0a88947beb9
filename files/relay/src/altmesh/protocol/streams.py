"""The streams of one link (docs/protocol.md section 7): ids and their parity, limits on both
sides, credit in both directions, acknowledgement, and which ids belong to past streams.

The table holds state and rules only; it sends nothing. `LinkConnection` asks it whether an
operation is allowed and what it changes (a credit grant to announce, a stream to forget), and
turns the answers into records and events. Faults in what the peer sent raise ProtocolErrors;
the local application's mistakes raise LocalProtocolErrors.

Credit-based flow control: the sender may send `send_credit` more bytes on a stream; the receiver
lets the peer send `receive_credit` more and returns credit with WINDOW records as the application
acknowledges what it consumed, in batches of at least 1/WINDOW_UPDATE_FRACTION of the window.
"""

from __future__ import annotations

from collections.abc import Mapping

from altmesh.protocol.constants import MAX_STREAM_ID, MAX_STREAM_WINDOW, WINDOW_UPDATE_FRACTION
from altmesh.protocol.errors import (
    FlowControlError,
    InvalidArgument,
    LocalStateError,
    StreamLimitReached,
    StreamStateError,
)
from altmesh.protocol.link_config import LinkStats


class StreamState:
    """One open stream: credit in both directions and the half-close flags."""

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
        self.wants_writable = False  # an offer was cut short: tell the app when credit comes

    # ---------------------------------------------------------------- sending
    def take_send_credit(self, offered: int) -> int:
        """How many of `offered` bytes may be sent now; that much credit is used up."""
        if self.local_fin:
            raise LocalStateError(f"stream {self.stream_id}: data after end_stream")
        accepted = min(offered, self.send_credit)
        if accepted < offered or accepted == 0:
            self.wants_writable = True
        self.send_credit -= accepted
        return accepted

    def add_send_credit(self, increment: int) -> bool:
        """The peer granted credit (WINDOW); True if the application waits for it."""
        self.send_credit += increment
        if self.send_credit > MAX_STREAM_WINDOW:
            raise FlowControlError(
                f"stream {self.stream_id}: peer granted {self.send_credit} bytes of credit, "
                f"more than any window ({MAX_STREAM_WINDOW})"
            )
        if self.wants_writable and not self.local_fin:
            self.wants_writable = False
            return True
        return False

    # ---------------------------------------------------------------- receiving
    def receive(self, size: int) -> bool:
        """The peer sent `size` bytes of DATA; False if that overruns the credit we gave."""
        if self.remote_fin:
            raise StreamStateError(f"stream {self.stream_id}: DATA after FIN")
        if size > self.receive_credit:
            return False
        self.receive_credit -= size
        self.received += size
        return True

    def receive_fin(self) -> None:
        if self.remote_fin:
            raise StreamStateError(f"stream {self.stream_id}: second FIN")
        self.remote_fin = True

    def acknowledge(self, nbytes: int, window: int) -> int:
        """The application consumed `nbytes`: the credit to return now (0: not yet, or none is
        needed because the peer sends nothing more)."""
        nbytes = min(nbytes, self.received - self.acked)
        if nbytes <= 0:
            return 0
        self.acked += nbytes
        if self.remote_fin:
            return 0
        self.grant_pending += nbytes
        if self.grant_pending * WINDOW_UPDATE_FRACTION < window:
            return 0
        grant, self.grant_pending = self.grant_pending, 0
        self.receive_credit += grant
        return grant

    @property
    def finished(self) -> bool:
        """Both sides sent FIN: the stream is over."""
        return self.local_fin and self.remote_fin


class StreamTable:
    """Every open stream of one link, and the id and limit rules for opening new ones.

    The link's initiator opens odd ids, its responder even ones, each strictly increasing, so ids
    never collide and an id at or below the last one opened belongs to a past stream.
    """

    def __init__(
        self,
        *,
        is_initiator: bool,
        stream_window: int,
        peer_may_open: int,
        we_may_open: int,
        stats: LinkStats,
    ) -> None:
        """`stream_window`: credit we give the peer per stream; `peer_may_open`: streams the peer
        may hold open (what we advertise); `we_may_open`: our own ceiling (config)."""
        self._streams: dict[int, StreamState] = {}
        # The open streams by id, for the link's hot path to look up without a call; only the
        # table changes it.
        self.open_streams: Mapping[int, StreamState] = self._streams
        self._is_initiator = is_initiator
        self._next_local_id = 1 if is_initiator else 2
        self._peer_last_id = 0
        self._open_by_us = 0
        self._open_by_peer = 0
        self._stream_window = stream_window
        self._peer_may_open = peer_may_open
        self._we_may_open = we_may_open
        self._peer_stream_window = 0
        self._peer_max_streams = 0
        self._stats = stats

    def set_peer_limits(self, stream_window: int, max_streams: int) -> None:
        """The peer's window per stream and stream limit, from its handshake payload."""
        self._peer_stream_window = stream_window
        self._peer_max_streams = max_streams

    @property
    def stream_window(self) -> int:
        return self._stream_window

    def __len__(self) -> int:
        return len(self._streams)

    @property
    def local_slots(self) -> tuple[int, int]:
        """(streams we may hold open that we opened, how many of them are free now)."""
        limit = min(self._peer_max_streams, self._we_may_open)
        return limit, max(0, limit - self._open_by_us)

    # ---------------------------------------------------------------- opening
    def open_local(self) -> StreamState:
        """A new stream of ours; StreamLimitReached if the peer's limit or the ids run out."""
        limit = min(self._peer_max_streams, self._we_may_open)
        if self._open_by_us >= limit:
            raise StreamLimitReached(
                f"stream limit reached: {self._open_by_us} streams open, peer allows "
                f"{self._peer_max_streams}"
            )
        stream_id = self._next_local_id
        if stream_id > MAX_STREAM_ID:
            raise StreamLimitReached("stream ids exhausted on this link; open a new link")
        self._next_local_id += 2
        self._open_by_us += 1
        return self._add(stream_id)

    def open_remote(self, stream_id: int) -> StreamState:
        """The peer's OPEN: its parity, increasing ids and our limit are checked."""
        if self._is_ours(stream_id):
            raise StreamStateError(f"peer opened stream {stream_id}, an id of our parity")
        if stream_id <= self._peer_last_id:
            raise StreamStateError(
                f"peer opened stream {stream_id}, not above its last id {self._peer_last_id}"
            )
        if self._open_by_peer >= self._peer_may_open:
            raise FlowControlError(
                f"peer opened more than the {self._peer_may_open} streams allowed"
            )
        self._peer_last_id = stream_id
        self._open_by_peer += 1
        return self._add(stream_id)

    def _add(self, stream_id: int) -> StreamState:
        stream = StreamState(stream_id, self._peer_stream_window, self._stream_window)
        self._streams[stream_id] = stream
        self._stats.streams_open += 1
        self._stats.streams_total += 1
        return stream

    # ---------------------------------------------------------------- finding
    def for_peer_record(self, stream_id: int, what: str) -> StreamState | None:
        """The stream a peer's record names; None for a past stream (records in flight after a
        RESET are ignored). An id never opened is the peer's fault."""
        stream = self._streams.get(stream_id)
        if stream is None and not self.is_past(stream_id):
            raise StreamStateError(f"{what} for stream {stream_id}, which was never opened")
        return stream

    def for_local_call(self, stream_id: int) -> StreamState | None:
        """The stream the application names; None for a past stream (the peer's RESET may have
        crossed the call). An id never opened is the application's mistake."""
        stream = self._streams.get(stream_id)
        if stream is None and not self.is_past(stream_id):
            raise LocalStateError(f"stream {stream_id} was never opened")
        return stream

    def get(self, stream_id: int) -> StreamState | None:
        """The open stream with this id, or None (never opened or finished)."""
        return self._streams.get(stream_id)

    def is_past(self, stream_id: int) -> bool:
        """Whether the id belongs to a stream that was opened (it may have finished since)."""
        if self._is_ours(stream_id):
            return 0 < stream_id < self._next_local_id
        return 0 < stream_id <= self._peer_last_id

    def _is_ours(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == self._is_initiator

    # ---------------------------------------------------------------- closing
    def forget(self, stream_id: int) -> None:
        """The stream is finished (both FINs, or a RESET either way)."""
        del self._streams[stream_id]
        if self._is_ours(stream_id):
            self._open_by_us -= 1
        else:
            self._open_by_peer -= 1
        self._stats.streams_open -= 1

    def check_consistent(self) -> None:
        """Raise AssertionError unless the table's counts and every stream's credit agree with
        its rules (the fuzz targets check this after every input)."""
        mine = sum(1 for stream_id in self._streams if self._is_ours(stream_id))
        assert mine == self._open_by_us, (mine, self._open_by_us)
        assert len(self._streams) - mine == self._open_by_peer
        assert self._open_by_peer <= self._peer_may_open
        assert self._stats.streams_open == len(self._streams)
        for stream_id, stream in self._streams.items():
            assert stream.stream_id == stream_id and 0 < stream_id <= MAX_STREAM_ID
            assert self.is_past(stream_id), stream_id
            assert 0 <= stream.send_credit <= MAX_STREAM_WINDOW
            assert 0 <= stream.receive_credit <= MAX_STREAM_WINDOW
            assert 0 <= stream.acked <= stream.received
            assert not stream.finished

    def acknowledge(self, stream_id: int, nbytes: int) -> int:
        """The application consumed `nbytes` of the stream: credit to return now (0: none)."""
        if nbytes < 0:
            raise InvalidArgument("nbytes must not be negative")
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        return stream.acknowledge(nbytes, self._stream_window)
