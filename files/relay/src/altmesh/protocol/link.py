"""LinkConnection: one secured TCP link as a sans-IO state machine (h11/aioquic style).

Bytes from the socket go in with `receive_data(data, now)`; events come out of `next_event()`;
bytes for the socket come out of `data_to_send()`; timers are driven by `handle_timer(now)` at
`next_timer_deadline()`. No sockets, threads or clocks inside: `now` is monotonic seconds passed
in by the adapter; the wall clock (only for handshake timestamps) is an injected callable.

Fatal peer faults raise a ProtocolError subclass from `receive_data` / `handle_timer`; the link is
then dead (the adapter logs a security event with `err.kind` and closes the socket).

Rekeying (docs/protocol.md, "Rekeying"): a fresh IK handshake runs inside REKEY_INIT/REKEY_REPLY
records under the old keys while data keeps flowing (make-before-break). Each direction switches
keys at an explicit marker: the REKEY_REPLY record (responder to initiator) and the REKEY_SWITCH
record (initiator to responder) are each the last record sealed under the old key of their
direction; every later message of that direction uses the new key. TCP keeps messages in order, so
no record can be lost, duplicated or reordered across the switch. When both ends start at once,
the REKEY_INIT of the link's initiator wins and the other is dropped.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from altmesh.protocol import constants as C
from altmesh.protocol import records as R
from altmesh.protocol.address import address_matches, node_address
from altmesh.protocol.errors import (
    AddressMismatch,
    BadLength,
    FlowControlError,
    HandshakeError,
    HandshakeTimeout,
    KeyRefused,
    LinkClosedError,
    MalformedRecord,
    PeerTimeout,
    ProtocolError,
    RekeyError,
    ReplayedHandshake,
    SessionExpired,
    StreamStateError,
)
from altmesh.protocol.events import (
    Event,
    HandshakeComplete,
    LinkClosed,
    PongReceived,
    Rekeyed,
    RouteInfoReceived,
    SecurityNotice,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from altmesh.protocol.handshake import (
    FLAG_REKEY,
    InitiatorHandshake,
    InitiatorPayload,
    ResponderHandshake,
    ResponderPayload,
    SessionKeys,
    check_message_length,
    prologue,
)
from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.link_config import LinkConfig, LinkStats
from altmesh.protocol.replay import ReplayStore, check_and_record
from altmesh.protocol.streams import StreamState
from altmesh.protocol.tai64n import next_timestamp
from altmesh.protocol.transport import TransportCipher

__all__ = ["LinkConfig", "LinkConnection", "LinkStats"]


class _State(enum.Enum):
    NEW = "new"
    AWAIT_RESPONSE = "await_response"  # initiator sent message 1
    AWAIT_INIT = "await_init"  # responder waits for message 1
    ESTABLISHED = "established"
    CLOSED = "closed"  # closed cleanly by either side
    FAILED = "failed"


@dataclass
class _RekeyInitiating:
    epoch: int
    handshake: InitiatorHandshake


@dataclass
class _RekeyResponding:
    epoch: int
    receive_key: bytes


class LinkConnection:
    """One link: handshake, records, streams, flow control and rekeying."""

    def __init__(
        self,
        config: LinkConfig,
        *,
        is_initiator: bool,
        local_keys: Sequence[StaticKeyPair],
        remote_public: bytes | None,
        authorize: Callable[[bytes], bool] | None,
        replay_store: ReplayStore | None,
        wallclock: Callable[[], float],
        ephemeral_private: bytes | None = None,
    ) -> None:
        """Use `initiator()` or `responder()`."""
        if not local_keys:
            raise ValueError("a link needs a local static key")
        self.config = config
        self.is_initiator = is_initiator
        self._local_keys = tuple(local_keys)
        self._local: StaticKeyPair = self._local_keys[0]
        self._remote_static: bytes | None = remote_public
        self._remote_address: ipaddress.IPv6Address | None = None
        self._authorize = authorize
        self._replay_store = replay_store
        self._wallclock = wallclock
        self._ephemeral_private = ephemeral_private  # only for recorded test vectors
        self._prologue = prologue(C.LINK_PROLOGUE_LABEL, config.network)
        self._state = _State.NEW
        self._handshake: InitiatorHandshake | None = None
        self._now = 0.0
        self._started_at: float | None = None
        self._fatal: ProtocolError | None = None

        self._inbound = bytearray()
        self._output: list[bytes] = []
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._events: deque[Event] = deque()

        self._send: TransportCipher | None = None
        self._receive: TransportCipher | None = None
        self._rekey: _RekeyInitiating | _RekeyResponding | None = None
        # Set when the send key reached rekey_after_messages; the rekey starts at the next safe
        # point (never in the middle of a key switch).
        self._rekey_due = False
        self._last_sent = 0.0
        self._last_received = 0.0

        self._streams: dict[int, StreamState] = {}
        # Link initiators open odd stream ids, responders even ones: no collisions.
        self._next_stream_id = 1 if is_initiator else 2
        self._peer_last_stream_id = 0
        self._peer_open_streams = 0
        self._our_open_streams = 0
        self._peer_stream_window = 0
        self._peer_max_streams = 0
        self._pings: dict[bytes, float] = {}
        self._pongs_unsent = 0
        self._stats = LinkStats()

    # ---------------------------------------------------------------- construction
    @classmethod
    def initiator(
        cls,
        config: LinkConfig,
        local: StaticKeyPair,
        remote_public: bytes,
        *,
        wallclock: Callable[[], float] = time.time,
        ephemeral_private: bytes | None = None,
    ) -> LinkConnection:
        """The connecting side; it must know the responder's static key.

        `ephemeral_private` fixes the ephemeral key: only for recorded test vectors.
        """
        if len(remote_public) != C.KEY_LEN:
            raise ValueError(f"remote public key must be {C.KEY_LEN} bytes")
        return cls(
            config,
            is_initiator=True,
            local_keys=(local,),
            remote_public=bytes(remote_public),
            authorize=None,
            replay_store=None,
            wallclock=wallclock,
            ephemeral_private=ephemeral_private,
        )

    @classmethod
    def responder(
        cls,
        config: LinkConfig,
        local_keys: Sequence[StaticKeyPair],
        *,
        authorize: Callable[[bytes], bool],
        replay_store: ReplayStore,
        wallclock: Callable[[], float] = time.time,
        ephemeral_private: bytes | None = None,
    ) -> LinkConnection:
        """The accepting side. `local_keys`: current key first, then the previous during rotation.

        `authorize(remote_static)` decides whether the peer's key may connect (KeyRefused if not).
        Accepted handshake timestamps are checked against and recorded in `replay_store`.
        """
        return cls(
            config,
            is_initiator=False,
            local_keys=local_keys,
            remote_public=None,
            authorize=authorize,
            replay_store=replay_store,
            wallclock=wallclock,
            ephemeral_private=ephemeral_private,
        )

    # ---------------------------------------------------------------- driving
    def start(self, now: float) -> None:
        """Begin: the initiator queues handshake message 1; the responder arms its timeout.

        Responders need not call it (the first `receive_data` arms the timeout), but should, so a
        peer that connects and says nothing is dropped after `handshake_timeout`.
        """
        self._now = now
        if self._state is not _State.NEW:
            return
        self._started_at = now
        self._last_received = now
        if not self.is_initiator:
            self._state = _State.AWAIT_INIT
            return
        assert self._remote_static is not None
        self._handshake = InitiatorHandshake(
            self._prologue,
            self._local,
            self._remote_static,
            ephemeral_private=self._ephemeral_private,
        )
        payload = InitiatorPayload(
            flags=0,
            timestamp=next_timestamp(self._wallclock),
            address=node_address(self.config.prefix, self._local.public),
            stream_window=self.config.stream_window,
            max_streams=self.config.advertised_max_streams,
        )
        self._write_frame(self._handshake.write_init(payload.encode()))
        self._state = _State.AWAIT_RESPONSE

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the socket. Raises ProtocolError on a fatal peer fault."""
        self._now = now
        self._check_alive()
        if self._state is _State.CLOSED:
            return  # after CLOSE nothing the peer sends matters
        if self._state is _State.NEW:  # responder whose adapter did not call start()
            self.start(now)
        if not data:
            return
        self._last_received = now
        self._stats.bytes_in += len(data)
        try:
            if self._inbound:
                self._inbound += data
                consumed = self._receive_frames(self._inbound)
                del self._inbound[:consumed]
            else:  # the common case: no partial frame waiting, parse `data` without copying it
                consumed = self._receive_frames(data)
                if consumed < len(data):
                    self._inbound = bytearray(data[consumed:])
            self._start_rekey_if_due()
        except ProtocolError as error:
            self._fail(error)
            raise

    def _receive_frames(self, source: bytes | bytearray) -> int:
        """Process every complete frame in `source`; returns how many bytes were consumed.

        Frames are handed on as memoryview slices (no copy before decryption). The views die
        with this call, so the caller may resize a bytearray `source` afterwards.
        """
        view = memoryview(source)
        offset = 0
        end = len(source)
        while end - offset >= C.LENGTH_PREFIX_LEN:
            length = (source[offset] << 8) | source[offset + 1]
            self._check_frame_length(length)
            frame_end = offset + C.LENGTH_PREFIX_LEN + length
            if frame_end > end:
                break
            self._receive_frame(view[offset + C.LENGTH_PREFIX_LEN : frame_end])
            offset = frame_end
            if self._is_closed():
                return end
        return offset

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        if self._events:
            return self._events.popleft()
        return None

    def data_to_send(self, now: float | None = None) -> bytes:
        """Everything that must be written to the socket now (drains the output buffer).

        Records queued since the last call are sealed here, under the current key; a session
        past its reject limit is never used: the link fails instead (raised by handle_timer).
        """
        if now is not None:
            self._now = now
        self._start_rekey_if_due()
        if self._pending and self._fatal is None:
            self._seal_pending()
        self._pongs_unsent = 0
        if not self._output:
            return b""
        data = b"".join(self._output)
        self._output.clear()
        self._stats.bytes_out += len(data)
        return data

    def handle_timer(self, now: float) -> None:
        """Run due timers (rekey, keepalive, expiry, timeouts). May raise ProtocolError."""
        self._now = now
        self._check_alive()
        try:
            self._run_timers(now)
        except ProtocolError as error:
            self._fail(error)
            raise

    def next_timer_deadline(self) -> float | None:
        """When `handle_timer` must be called next (same clock as `now`), or None."""
        if self._fatal is not None:
            return self._now
        state = self._state
        if state in (_State.AWAIT_RESPONSE, _State.AWAIT_INIT):
            if self._started_at is None:
                return None
            return self._started_at + self.config.handshake_timeout
        if state is not _State.ESTABLISHED:
            return None
        send, receive = self._send, self._receive
        assert send is not None and receive is not None
        config = self.config
        deadlines = [
            self._last_sent + config.keepalive_interval,
            self._last_received + config.effective_idle_timeout,
            min(send.created, receive.created) + config.reject_after_time,
        ]
        if self._rekey is None:
            deadlines.append(send.created + config.rekey_after_time)
            if self._rekey_due:
                deadlines.append(self._now)
        return float(min(deadlines))

    # ---------------------------------------------------------------- streams
    def open_stream(self, destination: ipaddress.IPv6Address, port: int) -> int:
        """Open a stream to `destination` (a node address) and `port`; returns its id.

        Raises FlowControlError if the peer's stream limit is reached, LinkClosedError if the link
        is not established.
        """
        self._require_established()
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} outside 0..65535")
        if self._our_open_streams >= min(self._peer_max_streams, self.config.max_streams):
            raise FlowControlError(
                f"stream limit reached: {self._our_open_streams} streams open, peer allows "
                f"{self._peer_max_streams}"
            )
        stream_id = self._next_stream_id
        if stream_id > C.MAX_STREAM_ID:
            raise FlowControlError("stream ids exhausted on this link; reconnect")
        self._next_stream_id += 2
        self._streams[stream_id] = StreamState(
            stream_id, self._peer_stream_window, self.config.stream_window
        )
        self._our_open_streams += 1
        self._stats.streams_open += 1
        self._stats.streams_total += 1
        self._queue(R.encode(R.OpenRecord(stream_id, destination, port)))
        return stream_id

    def send_stream_data(self, stream_id: int, data: bytes) -> int:
        """Queue up to the stream's credit of `data`; returns how many bytes were taken.

        Offer the rest again after StreamWritable for this stream. A stream the peer already
        reset takes nothing (returns 0).
        """
        self._require_established()
        stream = self._streams.get(stream_id)
        if stream is None:
            self._require_known_id(stream_id)
            return 0
        if stream.local_fin:
            raise StreamStateError(f"stream {stream_id}: data after end_stream")
        total = len(data)
        accepted = min(total, stream.send_credit)
        if accepted < total or accepted == 0:
            stream.wants_writable = True
        if accepted == 0:
            return 0
        stream.send_credit -= accepted
        view = memoryview(data)
        offset = 0
        step = C.MAX_DATA_PER_RECORD
        while offset < accepted:
            chunk = (
                view[offset : offset + step] if accepted - offset > step else view[offset:accepted]
            )
            offset += len(chunk)
            self._queue(R.data_header(stream_id, len(chunk)) + chunk)
        return accepted

    def stream_send_capacity(self, stream_id: int) -> int:
        """How many bytes `send_stream_data` would take now (0 for unknown/closed streams)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin or self._state is not _State.ESTABLISHED:
            return 0
        return stream.send_credit

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """The app consumed `nbytes` received on the stream: credit goes back to the peer."""
        if nbytes < 0:
            raise ValueError("nbytes must not be negative")
        stream = self._streams.get(stream_id)
        if stream is None or self._state is not _State.ESTABLISHED:
            return
        nbytes = min(nbytes, stream.received - stream.acked)
        if nbytes == 0:
            return
        stream.acked += nbytes
        if stream.remote_fin:
            return  # the peer sends nothing more: no credit needed
        stream.grant_pending += nbytes
        if stream.grant_pending * C.WINDOW_UPDATE_FRACTION >= self.config.stream_window:
            stream.receive_credit += stream.grant_pending
            self._queue(R.encode(R.WindowRecord(stream_id, stream.grant_pending)))
            stream.grant_pending = 0

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (FIN)."""
        self._require_established()
        stream = self._streams.get(stream_id)
        if stream is None:
            self._require_known_id(stream_id)
            return
        if stream.local_fin:
            return
        stream.local_fin = True
        self._queue(R.encode(R.FinRecord(stream_id)))
        if stream.remote_fin:
            self._forget_stream(stream_id)

    def reset_stream(self, stream_id: int, code: int, reason: str) -> None:
        """Abort the stream in both directions; unknown or closed streams are ignored."""
        if self._state is not _State.ESTABLISHED or stream_id not in self._streams:
            return
        if not 0 <= code <= 0xFFFF:
            raise ValueError(f"reset code {code} outside 0..65535")
        self._forget_stream(stream_id)
        self._queue(R.encode(R.ResetRecord(stream_id, code, reason)))

    # ---------------------------------------------------------------- control
    def ping(self, now: float) -> None:
        """Send a PING; a PongReceived event follows with the round-trip time."""
        self._now = now
        self._require_established()
        ping_id = os.urandom(C.PING_ID_LEN)
        if len(self._pings) >= C.MAX_UNANSWERED_PINGS:  # unanswered pings: keep only the newest
            self._pings.pop(next(iter(self._pings)))
        self._pings[ping_id] = now
        self._queue(R.encode(R.PingRecord(ping_id)))

    def send_route_info(self, payload: bytes) -> None:
        """Send opaque routing information (at most MAX_ROUTE_INFO_LEN bytes)."""
        self._require_established()
        self._queue(R.encode(R.RouteInfoRecord(bytes(payload))))

    def rekey(self, now: float) -> None:
        """Start a rekey now (normally timers do it); ignored if one is already running."""
        self._now = now
        self._require_established()
        self._start_rekey()

    def close(self, reason: str) -> None:
        """Tell the peer we close (CLOSE record); the link then accepts nothing more."""
        if self._state is _State.ESTABLISHED and self._fatal is None:
            self._queue(R.encode(R.CloseRecord(reason)))
            self._seal_pending()
        if self._state is not _State.FAILED:
            self._state = _State.CLOSED

    # ---------------------------------------------------------------- state
    @property
    def established(self) -> bool:
        """Whether the handshake completed and the link is not closed."""
        return self._state is _State.ESTABLISHED and self._fatal is None

    @property
    def remote_static(self) -> bytes | None:
        """The peer's proven static public key (None before the handshake)."""
        if self._remote_address is None:
            return None
        return self._remote_static

    @property
    def remote_address(self) -> ipaddress.IPv6Address | None:
        """The peer's address, derived from its proven key (None before the handshake)."""
        return self._remote_address

    @property
    def local_static(self) -> StaticKeyPair:
        """Our static key pair used on this link (responders: the one the peer addressed)."""
        return self._local

    @property
    def stats(self) -> LinkStats:
        """Counters of this link."""
        return self._stats

    # ================================================================ internals
    def _check_alive(self) -> None:
        if self._fatal is not None:
            error = self._fatal
            if self._state is not _State.FAILED:
                self._state = _State.FAILED
                raise error
        if self._state is _State.FAILED:
            raise LinkClosedError("the link failed earlier; nothing more can be done on it")

    def _is_closed(self) -> bool:
        return self._state is _State.CLOSED

    def _fail(self, error: ProtocolError) -> None:
        self._state = _State.FAILED
        self._fatal = error
        self._output.clear()
        self._pending.clear()
        self._pending_len = 0

    def _require_established(self) -> None:
        if self._state is not _State.ESTABLISHED or self._fatal is not None:
            raise LinkClosedError(f"link is not established (state {self._state.value})")

    def _require_known_id(self, stream_id: int) -> None:
        """Closed streams are fine to name (races with a peer's RESET); unused ids are not."""
        if not self._is_past_stream(stream_id):
            raise StreamStateError(f"stream {stream_id} was never opened")

    def _is_past_stream(self, stream_id: int) -> bool:
        ours = (stream_id % 2 == 1) == self.is_initiator
        if ours:
            return 0 < stream_id < self._next_stream_id
        return 0 < stream_id <= self._peer_last_stream_id

    def _forget_stream(self, stream_id: int) -> None:
        del self._streams[stream_id]
        if (stream_id % 2 == 1) == self.is_initiator:
            self._our_open_streams -= 1
        else:
            self._peer_open_streams -= 1
        self._stats.streams_open -= 1

    # ---------------------------------------------------------------- output
    def _write_frame(self, message: bytes) -> None:
        self._output.append(len(message).to_bytes(2, "big"))
        self._output.append(message)

    def _queue(self, record: bytes) -> None:
        """Queue a record; full plaintexts are sealed at once, the rest in data_to_send."""
        if self._pending_len + len(record) > C.MAX_PLAINTEXT_LEN:
            self._seal_pending()
        self._pending.append(record)
        self._pending_len += len(record)

    def _seal_pending(self) -> None:
        if not self._pending:
            return
        plaintext = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_len = 0
        self._seal(plaintext)

    def _seal(self, plaintext: bytes) -> None:
        """Encrypt one transport message under the current send key (never an expired one)."""
        send = self._send
        if self._fatal is not None or send is None:
            return
        config = self.config
        if self._now - send.created >= config.reject_after_time:
            self._fatal = SessionExpired(
                f"send key of epoch {send.epoch} is older than {config.reject_after_time} s "
                "and the rekey did not complete"
            )
            return
        if send.counter >= config.reject_after_messages:
            self._fatal = SessionExpired(
                f"send key of epoch {send.epoch} used for {send.counter} messages"
            )
            return
        self._write_frame(send.encrypt(plaintext))
        self._last_sent = self._now
        self._stats.messages_out += 1
        if send.counter >= config.rekey_after_messages:
            self._rekey_due = True

    # ---------------------------------------------------------------- input
    def _check_frame_length(self, length: int) -> None:
        state = self._state
        if state is _State.AWAIT_INIT:
            check_message_length(length, C.HANDSHAKE_INIT_LEN, "handshake message 1")
        elif state is _State.AWAIT_RESPONSE:
            check_message_length(length, C.HANDSHAKE_RESPONSE_LEN, "handshake message 2")
        elif length < C.TAG_LEN:
            raise BadLength(f"transport message of {length} bytes is shorter than its MAC")

    def _receive_frame(self, frame: memoryview) -> None:
        state = self._state
        if state is _State.ESTABLISHED:
            self._receive_transport(frame)
        elif state is _State.AWAIT_INIT:
            self._receive_init(bytes(frame))
        elif state is _State.AWAIT_RESPONSE:
            self._receive_response(bytes(frame))

    def _receive_init(self, message: bytes) -> None:
        responder = ResponderHandshake(
            self._prologue, self._local_keys, ephemeral_private=self._ephemeral_private
        )
        payload = InitiatorPayload.decode(responder.read_init(message))
        assert responder.local is not None and responder.remote_static is not None
        remote = responder.remote_static
        if payload.flags != 0:
            raise HandshakeError("rekey handshake sent as the first message of a link")
        if not address_matches(payload.address, self.config.prefix, remote):
            raise AddressMismatch(
                f"peer claims address {payload.address}, but its key's address in this network "
                f"is {node_address(self.config.prefix, remote)}"
            )
        assert self._authorize is not None and self._replay_store is not None
        if not self._authorize(remote):
            raise KeyRefused("the peer's static key is not allowed on this node")
        if not check_and_record(self._replay_store, remote, payload.timestamp):
            raise ReplayedHandshake(
                "handshake timestamp is not newer than the last accepted from this key "
                "(replayed or reordered handshake)"
            )
        self._local = responder.local
        self._remote_static = remote
        self._take_peer_limits(payload.stream_window, payload.max_streams)
        reply = ResponderPayload(
            flags=0,
            address=node_address(self.config.prefix, self._local.public),
            stream_window=self.config.stream_window,
            max_streams=self.config.advertised_max_streams,
        )
        message2, keys = responder.write_response(reply.encode())
        self._write_frame(message2)
        self._establish(keys, payload.address)

    def _receive_response(self, message: bytes) -> None:
        assert self._handshake is not None and self._remote_static is not None
        payload_bytes, keys = self._handshake.read_response(message)
        self._handshake = None
        payload = ResponderPayload.decode(payload_bytes)
        if payload.flags != 0:
            raise HandshakeError("rekey flag set in the first handshake of a link")
        if not address_matches(payload.address, self.config.prefix, self._remote_static):
            raise AddressMismatch(
                f"responder claims address {payload.address}, which its key does not give"
            )
        self._take_peer_limits(payload.stream_window, payload.max_streams)
        self._establish(keys, payload.address)

    def _take_peer_limits(self, stream_window: int, max_streams: int) -> None:
        self._peer_stream_window = stream_window
        self._peer_max_streams = max_streams

    def _establish(self, keys: SessionKeys, remote_address: ipaddress.IPv6Address) -> None:
        now = self._now
        self._send = TransportCipher(keys.send_key, now, 0)
        self._receive = TransportCipher(keys.receive_key, now, 0)
        self._remote_address = remote_address
        self._state = _State.ESTABLISHED
        self._last_sent = now
        self._last_received = now
        self._stats.handshakes += 1
        assert self._remote_static is not None
        self._events.append(HandshakeComplete(self._remote_static, remote_address))

    def _receive_transport(self, frame: memoryview) -> None:
        receive = self._receive
        assert receive is not None
        config = self.config
        if self._now - receive.created >= config.reject_after_time:
            raise SessionExpired(
                f"peer still uses the key of epoch {receive.epoch}, older than "
                f"{config.reject_after_time} s"
            )
        if receive.counter >= config.reject_after_messages:
            raise SessionExpired(f"peer used the key of epoch {receive.epoch} too often")
        plaintext = receive.decrypt(frame)
        self._stats.messages_in += 1
        for record_type, body, is_last in R.parse_records(plaintext):
            record = R.decode_record(record_type, body)
            if isinstance(record, R.DataRecord):
                self._on_data(record)
            else:
                self._on_control(record, is_last)
            if self._state is not _State.ESTABLISHED:
                return

    # ---------------------------------------------------------------- records
    def _on_data(self, record: R.DataRecord) -> None:
        stream = self._live_stream(record.stream_id, "DATA")
        if stream is None:
            return
        size = len(record.data)
        if stream.remote_fin:
            raise StreamStateError(f"stream {record.stream_id}: DATA after FIN")
        if size > stream.receive_credit:
            self._flow_violation(stream, size)
            return
        stream.receive_credit -= size
        stream.received += size
        if size:
            self._events.append(StreamData(record.stream_id, record.data))

    def _flow_violation(self, stream: StreamState, size: int) -> None:
        """The peer overran one stream's window: that stream dies, the link lives on."""
        detail = (
            f"stream {stream.stream_id}: peer sent {size} bytes with only "
            f"{stream.receive_credit} bytes of credit"
        )
        self._forget_stream(stream.stream_id)
        self._queue(
            R.encode(R.ResetRecord(stream.stream_id, C.RESET_FLOW_CONTROL, "flow control violated"))
        )
        self._events.append(SecurityNotice("flow_control", detail))
        self._events.append(StreamReset(stream.stream_id, C.RESET_FLOW_CONTROL, detail))

    def _live_stream(self, stream_id: int, what: str) -> StreamState | None:
        stream = self._streams.get(stream_id)
        if stream is None and not self._is_past_stream(stream_id):
            raise StreamStateError(f"{what} for stream {stream_id}, which was never opened")
        return stream  # None: closed already (records in flight after a RESET are ignored)

    def _on_control(self, record: R.Record, is_last: bool) -> None:
        if isinstance(record, R.OpenRecord):
            self._on_open(record)
        elif isinstance(record, R.WindowRecord):
            stream = self._live_stream(record.stream_id, "WINDOW")
            if stream is None:
                return
            stream.send_credit += record.increment
            if stream.send_credit > C.MAX_STREAM_WINDOW:
                raise FlowControlError(
                    f"stream {record.stream_id}: peer granted {stream.send_credit} bytes of "
                    f"credit, more than any window ({C.MAX_STREAM_WINDOW})"
                )
            if stream.wants_writable and not stream.local_fin:
                stream.wants_writable = False
                self._events.append(StreamWritable(record.stream_id))
        elif isinstance(record, R.FinRecord):
            stream = self._live_stream(record.stream_id, "FIN")
            if stream is None:
                return
            if stream.remote_fin:
                raise StreamStateError(f"stream {record.stream_id}: second FIN")
            stream.remote_fin = True
            self._events.append(StreamEnded(record.stream_id))
            if stream.local_fin:
                self._forget_stream(record.stream_id)
        elif isinstance(record, R.ResetRecord):
            if self._live_stream(record.stream_id, "RESET") is None:
                return
            self._forget_stream(record.stream_id)
            self._events.append(StreamReset(record.stream_id, record.code, record.reason))
        elif isinstance(record, R.PingRecord):
            # A peer that floods PINGs and never reads would make us queue PONGs without end:
            # answer a bounded number between two data_to_send() calls, drop the rest.
            if self._pongs_unsent < C.MAX_UNSENT_PONGS:
                self._pongs_unsent += 1
                self._queue(R.encode(R.PongRecord(record.ping_id)))
            elif self._pongs_unsent == C.MAX_UNSENT_PONGS:
                self._pongs_unsent += 1
                self._events.append(SecurityNotice("ping_flood", "PINGs faster than we send"))
        elif isinstance(record, R.PongRecord):
            sent = self._pings.pop(record.ping_id, None)
            if sent is None:
                self._events.append(SecurityNotice("unsolicited_pong", "PONG for no PING of ours"))
                return
            rtt = max(0.0, self._now - sent)
            self._stats.last_rtt = rtt
            self._events.append(PongReceived(rtt))
        elif isinstance(record, R.RouteInfoRecord):
            self._events.append(RouteInfoReceived(record.payload))
        elif isinstance(record, R.RekeyInitRecord):
            self._on_rekey_init(record)
        elif isinstance(record, R.RekeyReplyRecord):
            self._require_last(is_last, "REKEY_REPLY")
            self._on_rekey_reply(record)
        elif isinstance(record, R.RekeySwitchRecord):
            self._require_last(is_last, "REKEY_SWITCH")
            self._on_rekey_switch(record)
        elif isinstance(record, R.CloseRecord):
            self._state = _State.CLOSED
            self._events.append(LinkClosed(record.reason))

    def _on_open(self, record: R.OpenRecord) -> None:
        stream_id = record.stream_id
        peer_parity = 0 if self.is_initiator else 1
        if stream_id % 2 != peer_parity:
            raise StreamStateError(f"peer opened stream {stream_id}, an id of our parity")
        if stream_id <= self._peer_last_stream_id:
            raise StreamStateError(
                f"peer opened stream {stream_id}, not above its last id {self._peer_last_stream_id}"
            )
        if self._peer_open_streams >= self.config.advertised_max_streams:
            raise FlowControlError(
                f"peer opened more than the {self.config.advertised_max_streams} streams allowed"
            )
        self._peer_last_stream_id = stream_id
        self._streams[stream_id] = StreamState(
            stream_id, self._peer_stream_window, self.config.stream_window
        )
        self._peer_open_streams += 1
        self._stats.streams_open += 1
        self._stats.streams_total += 1
        self._events.append(StreamOpened(stream_id, record.destination, record.port))

    @staticmethod
    def _require_last(is_last: bool, what: str) -> None:
        if not is_last:
            raise MalformedRecord(f"{what} must be the last record of its transport message")

    # ---------------------------------------------------------------- rekeying
    def _current_epoch(self) -> int:
        assert self._send is not None and self._receive is not None
        return max(self._send.epoch, self._receive.epoch)

    def _rekey_payload(self) -> bytes:
        return InitiatorPayload(
            flags=FLAG_REKEY,
            timestamp=next_timestamp(self._wallclock),
            address=node_address(self.config.prefix, self._local.public),
            stream_window=self.config.stream_window,
            max_streams=self.config.advertised_max_streams,
        ).encode()

    def _start_rekey_if_due(self) -> None:
        if self._rekey_due and self._rekey is None:
            self._start_rekey()

    def _new_send_key(self, key: bytes, epoch: int) -> None:
        self._send = TransportCipher(key, self._now, epoch)
        self._rekey_due = False

    def _start_rekey(self) -> None:
        if self._rekey is not None or self._state is not _State.ESTABLISHED:
            return
        assert self._remote_static is not None
        epoch = self._current_epoch() + 1
        handshake = InitiatorHandshake(self._prologue, self._local, self._remote_static)
        message = handshake.write_init(self._rekey_payload())
        self._rekey = _RekeyInitiating(epoch, handshake)
        self._queue(R.encode(R.RekeyInitRecord(epoch, message)))

    def _on_rekey_init(self, record: R.RekeyInitRecord) -> None:
        expected = self._current_epoch() + 1
        if record.epoch != expected:
            raise RekeyError(f"REKEY_INIT for epoch {record.epoch}, expected {expected}")
        rekey = self._rekey
        if isinstance(rekey, _RekeyResponding):
            raise RekeyError("REKEY_INIT while the previous rekey awaits its REKEY_SWITCH")
        if isinstance(rekey, _RekeyInitiating):
            if self.is_initiator:
                return  # both started at once: the link initiator's rekey wins
            self._rekey = None  # ours loses; answer theirs
        if len(record.message) != C.HANDSHAKE_INIT_LEN:
            raise RekeyError(
                f"rekey handshake message 1 is {len(record.message)} bytes, "
                f"must be {C.HANDSHAKE_INIT_LEN}"
            )
        responder = ResponderHandshake(self._prologue, (self._local,))
        try:
            payload = InitiatorPayload.decode(responder.read_init(record.message))
        except HandshakeError as error:
            raise RekeyError(f"rekey handshake message 1 invalid: {error.message}") from None
        if responder.remote_static != self._remote_static:
            raise RekeyError("rekey handshake from a different static key than the link's")
        if payload.flags != FLAG_REKEY:
            raise RekeyError("rekey handshake without the rekey flag")
        reply = ResponderPayload(
            flags=FLAG_REKEY,
            address=node_address(self.config.prefix, self._local.public),
            stream_window=self.config.stream_window,
            max_streams=self.config.advertised_max_streams,
        )
        message2, keys = responder.write_response(reply.encode())
        # REKEY_REPLY is the last message under the old send key; then the new one starts.
        self._queue(R.encode(R.RekeyReplyRecord(record.epoch, message2)))
        self._seal_pending()
        self._new_send_key(keys.send_key, record.epoch)
        self._rekey = _RekeyResponding(record.epoch, keys.receive_key)

    def _on_rekey_reply(self, record: R.RekeyReplyRecord) -> None:
        rekey = self._rekey
        if not isinstance(rekey, _RekeyInitiating) or rekey.epoch != record.epoch:
            raise RekeyError(f"unexpected REKEY_REPLY for epoch {record.epoch}")
        if len(record.message) != C.HANDSHAKE_RESPONSE_LEN:
            raise RekeyError(
                f"rekey handshake message 2 is {len(record.message)} bytes, "
                f"must be {C.HANDSHAKE_RESPONSE_LEN}"
            )
        try:
            payload_bytes, keys = rekey.handshake.read_response(record.message)
            payload = ResponderPayload.decode(payload_bytes)
        except HandshakeError as error:
            raise RekeyError(f"rekey handshake message 2 invalid: {error.message}") from None
        if payload.flags != FLAG_REKEY:
            raise RekeyError("rekey reply without the rekey flag")
        now = self._now
        # The peer switched its send key right after REKEY_REPLY: so do we for receiving.
        self._receive = TransportCipher(keys.receive_key, now, rekey.epoch)
        # REKEY_SWITCH is the last message under our old send key.
        self._queue(R.encode(R.RekeySwitchRecord(rekey.epoch)))
        self._seal_pending()
        self._new_send_key(keys.send_key, rekey.epoch)
        self._rekey = None
        self._rekeyed(initiated_by_us=True)

    def _on_rekey_switch(self, record: R.RekeySwitchRecord) -> None:
        rekey = self._rekey
        if not isinstance(rekey, _RekeyResponding) or rekey.epoch != record.epoch:
            raise RekeyError(f"unexpected REKEY_SWITCH for epoch {record.epoch}")
        self._receive = TransportCipher(rekey.receive_key, self._now, rekey.epoch)
        self._rekey = None
        self._rekeyed(initiated_by_us=False)

    def _rekeyed(self, *, initiated_by_us: bool) -> None:
        self._stats.rekeys += 1
        self._stats.key_epoch = self._current_epoch()
        self._events.append(Rekeyed(initiated_by_us))

    # ---------------------------------------------------------------- timers
    def _run_timers(self, now: float) -> None:
        state = self._state
        if state in (_State.AWAIT_RESPONSE, _State.AWAIT_INIT):
            if self._started_at is not None and now >= self._started_at + (
                self.config.handshake_timeout
            ):
                raise HandshakeTimeout(
                    f"no handshake completed within {self.config.handshake_timeout} s"
                )
            return
        if state is not _State.ESTABLISHED:
            return
        send, receive = self._send, self._receive
        assert send is not None and receive is not None
        config = self.config
        oldest = min(send.created, receive.created)
        if now - oldest >= config.reject_after_time:
            raise SessionExpired(
                f"session keys older than {config.reject_after_time} s (rekey did not complete)"
            )
        if now - self._last_received >= config.effective_idle_timeout:
            raise PeerTimeout(
                f"nothing received from the peer for {now - self._last_received:.1f} s"
            )
        if self._rekey is None and now - send.created >= config.rekey_after_time:
            self._start_rekey()
        self._start_rekey_if_due()
        if now - self._last_sent >= config.keepalive_interval and not self._pending:
            self._seal(b"")  # keepalive: an empty transport message
