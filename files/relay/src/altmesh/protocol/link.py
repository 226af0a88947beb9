"""LinkConnection: one secured TCP link as a sans-IO state machine (h11/aioquic style).

Bytes from the socket go in with `receive_data(data, now)`; events come out of `next_event()`;
bytes for the socket come out of `data_to_send(now)`; timers are driven by `handle_timer(now)` at
`next_timer_deadline()`. No sockets, threads or clocks inside: `now` is monotonic seconds, passed
by the adapter to every call that may seal, decrypt or check a deadline; the labels of handshake
timestamps come from the node's `TimestampIssuer`.

Fatal faults of the peer raise a ProtocolError subclass from `receive_data` / `handle_timer`; the
link is then dead (the adapter logs a security event with `err.kind` and closes the socket).
Mistakes of the application raise LocalProtocolError subclasses and change nothing.

This module holds construction, driving, and the dispatch of received records through a table
(`RECORD_HANDLERS`, record type -> handler). Each other concept has its own module: framing
(`framing.py`), the first handshake (`link_handshake.py`), sealing (`send.py`), decryption
(`receive.py`), streams and credit (`streams.py`), rekeying (`rekey.py`), timers (`timers.py`),
PING/PONG (`ping.py`).
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from altmesh.protocol import constants as C
from altmesh.protocol import records as R
from altmesh.protocol.errors import (
    InvalidArgument,
    LinkNotEstablished,
    MalformedRecord,
    ProtocolError,
    StoreUnavailable,
    Truncated,
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
from altmesh.protocol.framing import FrameReader
from altmesh.protocol.handshake import InitiatorHandshake, check_message_length, prologue
from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.limits import MIN_USEFUL_WINDOW_INCREMENT, ControlBudget
from altmesh.protocol.link_config import LinkConfig, LinkStats
from altmesh.protocol.link_handshake import Established, complete, initiator_payload, respond
from altmesh.protocol.ping import PingAnswer, PingTracker
from altmesh.protocol.receive import Receiver, check_transport_length
from altmesh.protocol.rekey import KeySwitch, Rekeying
from altmesh.protocol.replay import ReplayStore
from altmesh.protocol.send import Sender
from altmesh.protocol.streams import StreamState, StreamTable
from altmesh.protocol.tai64n import TimestampIssuer
from altmesh.protocol.timers import LinkTimers

__all__ = ["RECORD_HANDLERS", "LinkConfig", "LinkConnection", "LinkStats"]

_RECORD_HEADER = R.RECORD_HEADER
_STREAM_ID = R.STREAM_ID
_DATA = C.RecordType.DATA
_HEADER_LEN = C.RECORD_HEADER_LEN


class _State(enum.Enum):
    NEW = "new"
    AWAIT_RESPONSE = "await_response"  # initiator sent message 1
    AWAIT_INIT = "await_init"  # responder waits for message 1
    ESTABLISHED = "established"
    CLOSED = "closed"  # closed cleanly by either side
    FAILED = "failed"


class LinkConnection:
    """One link: handshake, records, streams, flow control and rekeying.

    Calls that send something the application expects to arrive (`open_stream`,
    `send_stream_data`, `end_stream`, `ping`, `send_route_info`, `rekey`) raise
    LinkNotEstablished unless the link is established. Clean-up calls (`acknowledge`,
    `reset_stream`, `close`) do nothing on a link that is not.
    """

    def __init__(
        self,
        config: LinkConfig,
        *,
        is_initiator: bool,
        local_keys: Sequence[StaticKeyPair],
        remote_public: bytes | None,
        authorize: Callable[[bytes], bool] | None,
        replay_store: ReplayStore | None,
        timestamps: TimestampIssuer,
        ephemeral_private: bytes | None = None,
        probe: bool = False,
    ) -> None:
        """Use `initiator()` or `responder()`."""
        if not local_keys:
            raise InvalidArgument("a link needs a local static key")
        self.config = config
        self.is_initiator = is_initiator
        self._local_keys = tuple(local_keys)
        self._local: StaticKeyPair = self._local_keys[0]
        self._remote_static: bytes | None = remote_public
        self._remote_address: ipaddress.IPv6Address | None = None
        self._probe = probe  # a measuring link (HANDSHAKE_FLAG_PROBE), either side
        self._authorize = authorize
        self._replay_store = replay_store
        self._timestamps = timestamps
        self._ephemeral_private = ephemeral_private  # only for recorded test vectors
        self._prologue = prologue(C.LINK_PROLOGUE_LABEL, config.network)
        self._state = _State.NEW
        # Bumped whenever next_timer_deadline() may have moved earlier (see deadline_version).
        self._deadline_changes = 0
        self._now = 0.0  # the `now` of the receive_data call being handled
        self._handshake: InitiatorHandshake | None = None
        self._events: deque[Event] = deque()
        self._stats = LinkStats()
        self._frames = FrameReader()
        self._sender = Sender(config, self._stats)
        self._receiver = Receiver(config, self._stats)
        self._timers = LinkTimers(config, self._sender, self._receiver)
        self._streams = StreamTable(
            is_initiator=is_initiator,
            stream_window=config.stream_window,
            peer_may_open=config.advertised_max_streams,
            we_may_open=config.max_streams,
            stats=self._stats,
        )
        self._pings = PingTracker()
        self._budget = ControlBudget(config.control_limits)
        self._rekey: Rekeying | None = None  # from the end of the first handshake on

    # ---------------------------------------------------------------- construction
    @classmethod
    def initiator(
        cls,
        config: LinkConfig,
        local: StaticKeyPair,
        remote_public: bytes,
        *,
        timestamps: TimestampIssuer,
        ephemeral_private: bytes | None = None,
        probe: bool = False,
    ) -> LinkConnection:
        """The connecting side; it must know the responder's static key.

        `probe`: the link only measures the responder (HANDSHAKE_FLAG_PROBE): a relay does not
        attach this node through it. `ephemeral_private` fixes the ephemeral key: only for
        recorded test vectors.
        """
        if len(remote_public) != C.KEY_LEN:
            raise InvalidArgument(f"remote public key must be {C.KEY_LEN} bytes")
        return cls(
            config,
            is_initiator=True,
            local_keys=(local,),
            remote_public=bytes(remote_public),
            authorize=None,
            replay_store=None,
            timestamps=timestamps,
            ephemeral_private=ephemeral_private,
            probe=probe,
        )

    @classmethod
    def responder(
        cls,
        config: LinkConfig,
        local_keys: Sequence[StaticKeyPair],
        *,
        authorize: Callable[[bytes], bool],
        replay_store: ReplayStore,
        timestamps: TimestampIssuer,
        ephemeral_private: bytes | None = None,
    ) -> LinkConnection:
        """The accepting side. `local_keys`: current key first, then the previous during rotation.

        `authorize(remote_static)` decides whether the peer's key may connect (KeyRefused if not).
        Accepted handshake timestamps are checked against and recorded in `replay_store`.
        `timestamps` labels the rekey handshakes this side starts.
        """
        return cls(
            config,
            is_initiator=False,
            local_keys=local_keys,
            remote_public=None,
            authorize=authorize,
            replay_store=replay_store,
            timestamps=timestamps,
            ephemeral_private=ephemeral_private,
        )

    # ---------------------------------------------------------------- driving
    def start(self, now: float) -> None:
        """Begin: the initiator queues handshake message 1; the responder arms its timeout.

        Responders need not call it (the first `receive_data` arms the timeout), but should, so a
        peer that connects and says nothing is dropped after `handshake_timeout`.
        """
        if self._state is not _State.NEW:
            return
        self._deadline_changes += 1
        self._timers.started_at = now
        self._receiver.last_received = now
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
        flags = C.HANDSHAKE_FLAG_PROBE if self._probe else 0
        payload = initiator_payload(
            self.config, self._local, flags=flags, timestamp=self._timestamps.next()
        )
        self._sender.write_frame(self._handshake.write_init(payload))
        self._state = _State.AWAIT_RESPONSE

    def receive_data(self, data: bytes | memoryview, now: float) -> None:
        """Feed bytes read from the socket. Raises ProtocolError on a fatal peer fault.

        `data` may be a view of a buffer the caller reuses: nothing keeps it after the call
        (an incomplete frame is copied)."""
        if self._state is _State.FAILED or self._sender.expired is not None:
            self._check_alive()  # raises
        if self._state is _State.CLOSED:
            return  # after CLOSE nothing the peer sends matters
        if self._state is _State.NEW:  # responder whose adapter did not call start()
            self.start(now)
        if not data:
            return
        self._receiver.last_received = now
        self._stats.bytes_in += len(data)
        self._now = now
        try:
            self._frames.feed(data, self._check_frame_length, self._receive_frame)
            if self._sender.rekey_due:
                self._start_rekey_if_due(now)
        except (ProtocolError, StoreUnavailable):
            self._fail()
            raise

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        if self._events:
            return self._events.popleft()
        return None

    @property
    def pending_events(self) -> deque[Event]:
        """The events `next_event()` hands out, oldest first: an adapter may pop them from this
        deque itself (`popleft`), saving a call per event. Nothing else may change it."""
        return self._events

    def data_to_send(self, now: float) -> bytes:
        """Everything that must be written to the socket now (drains the output buffer).

        Records queued since the last call are sealed here, under the current key; a session
        past its reject limits is never used: the link fails instead (raised by handle_timer).
        """
        sender = self._sender
        if sender.rekey_due:
            self._start_rekey_if_due(now)
        if not sender.busy:
            return b""  # nothing queued or sealed (so no PONG is owed either)
        self._pings.written()
        return sender.seal_and_take(now)

    def handle_timer(self, now: float) -> None:
        """Run due timers (rekey, keepalive, expiry, timeouts). May raise ProtocolError."""
        self._check_alive()
        try:
            self._run_timers(now)
        except ProtocolError:
            self._fail()
            raise

    @property
    def deadline_version(self) -> int:
        """A number that changes whenever `next_timer_deadline()` may have moved earlier.

        While it stays the same, the deadline can only have moved later (each message sent or
        received pushes the keepalive and idle deadlines on; nothing else changes): an adapter
        whose timer is armed at or before the deadline it read at this version need not ask
        again. It changes with the link's state, the keys, a rekey starting or ending, a rekey
        falling due and a key expiring."""
        return self._deadline_changes + self._sender.deadline_changes

    def next_timer_deadline(self) -> float | None:
        """When `handle_timer` must be called next (same clock as `now`), or None."""
        state = self._state
        if state in (_State.FAILED, _State.CLOSED, _State.NEW):
            return None
        expired_at = self._sender.expired_at
        if expired_at is not None:
            return expired_at  # handle_timer raises the expiry
        if state is not _State.ESTABLISHED:
            return self._timers.handshake_deadline()
        return self._timers.established_deadline(rekey_running=self._rekeying.running)

    def _run_timers(self, now: float) -> None:
        state = self._state
        if state in (_State.AWAIT_RESPONSE, _State.AWAIT_INIT):
            self._timers.check_handshake(now)
            return
        if state is not _State.ESTABLISHED:
            return
        work = self._timers.check_established(now, rekey_running=self._rekeying.running)
        if work.start_rekey:
            self._start_rekey(now)
        if work.keepalive and not self._sender.has_queued:
            self._sender.seal(b"", now)  # keepalive: an empty transport message

    # ---------------------------------------------------------------- streams
    def open_stream(
        self, destination: ipaddress.IPv6Address, port: int, *, hops_left: int | None = None
    ) -> int:
        """Open a stream to `destination` (a node address) and `port`; returns its id.

        With `hops_left` (relays only, towards another relay) the stream opens with RELAY_OPEN,
        which carries how many more relay links it may cross after this one (0..255).
        Raises StreamLimitReached if the peer's stream limit is reached.
        """
        self._require_established()
        if not 0 <= port <= 0xFFFF:
            raise InvalidArgument(f"port {port} outside 0..65535")
        if hops_left is not None and not 0 <= hops_left <= C.MAX_HOPS_LEFT:
            raise InvalidArgument(f"hops_left {hops_left} outside 0..{C.MAX_HOPS_LEFT}")
        stream = self._streams.open_local()
        record: R.Record
        if hops_left is None:
            record = R.OpenRecord(stream.stream_id, destination, port)
        else:
            record = R.RelayOpenRecord(stream.stream_id, destination, port, hops_left)
        self._sender.queue(R.encode(record))
        return stream.stream_id

    def send_stream_data(self, stream_id: int, data: bytes) -> int:
        """Queue up to the stream's credit of `data`; returns how many bytes were taken.

        Offer the rest again after StreamWritable for this stream. A stream the peer already
        reset takes nothing (returns 0).
        """
        if self._state is not _State.ESTABLISHED or self._sender.expired is not None:
            self._require_established()
        stream = self._streams.open_streams.get(stream_id)
        if stream is None:
            stream = self._streams.for_local_call(stream_id)
            if stream is None:
                return 0
        size = len(data)
        accepted = stream.take_send_credit(size)
        if accepted == size and size <= C.MAX_DATA_PER_RECORD:  # one record (the usual case)
            if size:
                self._sender.queue(R.data_header(stream_id, size) + data)
            return size
        view = memoryview(data)
        offset = 0
        step = C.MAX_DATA_PER_RECORD
        while offset < accepted:
            end = min(offset + step, accepted)
            self._sender.queue(R.data_header(stream_id, end - offset) + view[offset:end])
            offset = end
        return accepted

    def check_invariants(self) -> None:
        """Raise AssertionError if the link's state breaks a rule of its own: the stream table's
        counts and credit, and the memory it holds between calls (at most one incomplete frame
        of the peer's). For fuzz targets and tests; costs O(streams)."""
        self._streams.check_consistent()
        assert self._frames.buffered <= C.LENGTH_PREFIX_LEN + C.MAX_MESSAGE_LEN
        assert self._stats.records_in * C.RECORD_HEADER_LEN <= self._stats.bytes_in

    @property
    def retained_bytes(self) -> int:
        """Bytes the link holds for later: an incomplete frame of the peer's, and what waits to
        be sealed or written."""
        return self._frames.buffered + self._sender.retained_bytes

    @property
    def stream_slots(self) -> tuple[int, int]:
        """(streams `open_stream` may hold open on this link in all, how many are free now):
        the peer's max_streams, capped by our own; (0, 0) before the handshake."""
        return self._streams.local_slots

    def stream_send_capacity(self, stream_id: int) -> int:
        """How many bytes `send_stream_data` would take now (0 for unknown/closed streams)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin or not self.established:
            return 0
        return stream.send_credit

    def acknowledge(self, stream_id: int, nbytes: int) -> bool:
        """The app consumed `nbytes` received on the stream: credit goes back to the peer.
        True if that queued a WINDOW record (there is something to send)."""
        if nbytes < 0:
            raise InvalidArgument("nbytes must not be negative")
        if self._state is not _State.ESTABLISHED:
            return False
        stream = self._streams.open_streams.get(stream_id)
        if stream is None:
            return False
        grant = stream.acknowledge(nbytes, self.config.stream_window)
        if grant:
            self._sender.queue(R.encode(R.WindowRecord(stream_id, grant)))
            return True
        return False

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (FIN)."""
        self._require_established()
        stream = self._streams.for_local_call(stream_id)
        if stream is None or stream.local_fin:
            return
        stream.local_fin = True
        self._sender.queue(R.encode(R.FinRecord(stream_id)))
        if stream.remote_fin:
            self._streams.forget(stream_id)

    def reset_stream(self, stream_id: int, code: int, reason: str) -> None:
        """Abort the stream in both directions; a finished stream is left alone."""
        if not 0 <= code <= 0xFFFF:
            raise InvalidArgument(f"reset code {code} outside 0..65535")
        if self._state is not _State.ESTABLISHED:
            return
        if self._streams.for_local_call(stream_id) is None:
            return
        self._streams.forget(stream_id)
        self._sender.queue(R.encode(R.ResetRecord(stream_id, code, reason)))

    # ---------------------------------------------------------------- control
    def ping(self, now: float) -> None:
        """Send a PING; a PongReceived event follows with the round-trip time."""
        self._require_established()
        self._sender.queue(R.encode(R.PingRecord(self._pings.new_ping(now))))

    def send_route_info(self, payload: bytes) -> None:
        """Send opaque routing information (at most MAX_ROUTE_INFO_LEN bytes)."""
        self._require_established()
        self._sender.queue(R.encode(R.RouteInfoRecord(bytes(payload))))

    def rekey(self, now: float) -> None:
        """Start a rekey now (normally timers do it); ignored if one is already running."""
        self._require_established()
        self._start_rekey(now)

    def close(self, reason: str, now: float) -> None:
        """Tell the peer we close (CLOSE record, sealed now); the link then accepts nothing more."""
        if self.established:
            self._sender.queue(R.encode(R.CloseRecord(reason)))
            self._sender.seal_queued(now)
        if self._state is not _State.FAILED:
            self._state = _State.CLOSED
        self._deadline_changes += 1

    # ---------------------------------------------------------------- state
    @property
    def established(self) -> bool:
        """Whether the handshake completed and the link is neither closed nor failing."""
        return self._state is _State.ESTABLISHED and self._sender.expired is None

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
    def probe(self) -> bool:
        """A link that only measures (HANDSHAKE_FLAG_PROBE): made so by the initiator, learnt
        by the responder in the handshake."""
        return self._probe

    @property
    def local_static(self) -> StaticKeyPair:
        """Our static key pair used on this link (responders: the one the peer addressed)."""
        return self._local

    @property
    def last_received(self) -> float:
        """When bytes from the peer last arrived (the `now` of that `receive_data`; the start
        before any): a peer silent since longer than a deadline may be declared dead."""
        return self._receiver.last_received

    @property
    def stats(self) -> LinkStats:
        """Counters of this link."""
        return self._stats

    # ================================================================ internals
    def _check_alive(self) -> None:
        if self._state is _State.FAILED:
            raise LinkNotEstablished("the link failed earlier; nothing more can be done on it")
        expired = self._sender.expired
        if expired is not None:
            self._fail()
            raise expired

    def _fail(self) -> None:
        self._state = _State.FAILED
        self._deadline_changes += 1
        self._sender.discard()

    def _require_established(self) -> None:
        if not self.established:
            raise LinkNotEstablished(f"link is not established (state {self._state.value})")

    @property
    def _rekeying(self) -> Rekeying:
        assert self._rekey is not None, "rekeying exists once the link is established"
        return self._rekey

    # ---------------------------------------------------------------- handshake
    def _check_frame_length(self, length: int) -> None:
        state = self._state
        if state is _State.ESTABLISHED:
            if length < C.TAG_LEN:
                check_transport_length(length)  # raises
        elif state is _State.AWAIT_INIT:
            check_message_length(length, C.HANDSHAKE_INIT_LEN, "handshake message 1")
        elif state is _State.AWAIT_RESPONSE:
            check_message_length(length, C.HANDSHAKE_RESPONSE_LEN, "handshake message 2")
        else:
            check_transport_length(length)

    def _receive_frame(self, frame: memoryview) -> bool:
        """One frame (of the `receive_data` call at `self._now`); False once the link is closed
        (the rest is not read)."""
        state = self._state
        now = self._now
        if state is _State.ESTABLISHED:
            self._receive_transport(frame, now)
        elif state is _State.AWAIT_INIT:
            assert self._authorize is not None and self._replay_store is not None
            established = respond(
                self.config,
                self._prologue,
                self._local_keys,
                bytes(frame),
                authorize=self._authorize,
                replay_store=self._replay_store,
                ephemeral_private=self._ephemeral_private,
            )
            self._establish(established, now)
        elif state is _State.AWAIT_RESPONSE:
            handshake = self._handshake
            assert handshake is not None
            self._handshake = None
            self._establish(complete(self.config, handshake, bytes(frame)), now)
        return self._state is not _State.CLOSED

    def _establish(self, established: Established, now: float) -> None:
        if established.reply is not None:
            self._sender.write_frame(established.reply)
        self._local = established.local
        self._remote_static = established.remote_static
        self._remote_address = established.remote_address
        if established.probe:
            self._probe = True
        self._streams.set_peer_limits(established.peer_stream_window, established.peer_max_streams)
        self._sender.install_key(established.keys.send_key, 0, now)
        self._receiver.install_key(established.keys.receive_key, 0, now)
        self._sender.last_sent = now
        self._receiver.last_received = now
        self._rekey = Rekeying(
            self.config,
            self._prologue,
            self._local,
            established.remote_static,
            is_link_initiator=self.is_initiator,
            timestamps=self._timestamps,
        )
        self._state = _State.ESTABLISHED
        self._deadline_changes += 1
        self._stats.handshakes += 1
        self._events.append(
            HandshakeComplete(
                established.remote_static, established.remote_address, probe=self._probe
            )
        )

    # ---------------------------------------------------------------- records
    def _receive_transport(self, frame: memoryview, now: float) -> None:
        plaintext = self._receiver.open(frame, now)
        if not plaintext:
            self._budget.idle.spend(now)  # a keepalive
            return
        # The loop of `R.parse_records` + `R.decode_record`, written out: DATA records (almost
        # every record of a link) are taken from the plaintext directly, without the generator
        # and a DataRecord; every other record (and every malformed DATA) is decoded by
        # `R.decode_record` and dispatched through RECORD_HANDLERS.
        stats = self._stats
        view = memoryview(plaintext)
        offset = 0
        end = len(plaintext)
        while offset < end:
            if end - offset < _HEADER_LEN:
                raise Truncated(f"record header cut short at offset {offset} of {end}")
            record_type, length = _RECORD_HEADER.unpack_from(plaintext, offset)
            start = offset + _HEADER_LEN
            offset = start + length
            if offset > end:
                raise Truncated(
                    f"record of type 0x{record_type:02x} claims {length} bytes, "
                    f"only {end - start} remain"
                )
            stats.records_in += 1
            if record_type == _DATA and length >= 4:
                stream_id = _STREAM_ID.unpack_from(plaintext, start)[0]
                if stream_id:
                    self._stream_data(stream_id, plaintext[start + 4 : offset], now)
                    if self._state is not _State.ESTABLISHED:
                        return
                    continue
            record = R.decode_record(record_type, view[start:offset])
            RECORD_HANDLERS[type(record)](self, record, offset == end, now)
            if self._state is not _State.ESTABLISHED:
                return

    def _on_data(self, record: R.DataRecord, is_last: bool, now: float) -> None:
        self._stream_data(record.stream_id, record.data, now)

    def _stream_data(self, stream_id: int, data: bytes, now: float) -> None:
        stream = self._streams.open_streams.get(stream_id)
        if stream is None:
            stream = self._streams.for_peer_record(stream_id, "DATA")
        size = len(data)
        if stream is None or not size:
            self._budget.idle.spend(now)
            if stream is None:
                return
        if not stream.receive(size):
            self._flow_violation(stream, size)
            return
        if size:
            self._events.append(StreamData(stream_id, data))

    def _flow_violation(self, stream: StreamState, size: int) -> None:
        """The peer overran one stream's window: that stream dies, the link lives on."""
        detail = (
            f"stream {stream.stream_id}: peer sent {size} bytes with only "
            f"{stream.receive_credit} bytes of credit"
        )
        self._streams.forget(stream.stream_id)
        self._sender.queue(
            R.encode(R.ResetRecord(stream.stream_id, C.RESET_FLOW_CONTROL, "flow control violated"))
        )
        self._events.append(SecurityNotice("flow_control", detail))
        self._events.append(StreamReset(stream.stream_id, C.RESET_FLOW_CONTROL, detail))

    def _on_open(self, record: R.OpenRecord, is_last: bool, now: float) -> None:
        self._budget.stream_churn.spend(now)
        self._streams.open_remote(record.stream_id)
        self._events.append(StreamOpened(record.stream_id, record.destination, record.port))

    def _on_relay_open(self, record: R.RelayOpenRecord, is_last: bool, now: float) -> None:
        self._streams.open_remote(record.stream_id)
        self._events.append(
            StreamOpened(record.stream_id, record.destination, record.port, record.hops_left)
        )

    def _on_window(self, record: R.WindowRecord, is_last: bool, now: float) -> None:
        stream = self._streams.for_peer_record(record.stream_id, "WINDOW")
        if stream is None or record.increment < MIN_USEFUL_WINDOW_INCREMENT:
            self._budget.idle.spend(now)
        if stream is not None and stream.add_send_credit(record.increment):
            self._events.append(StreamWritable(record.stream_id))

    def _on_fin(self, record: R.FinRecord, is_last: bool, now: float) -> None:
        stream = self._streams.for_peer_record(record.stream_id, "FIN")
        if stream is None:
            self._budget.idle.spend(now)
            return
        stream.receive_fin()
        self._events.append(StreamEnded(record.stream_id))
        if stream.local_fin:
            self._streams.forget(record.stream_id)

    def _on_reset(self, record: R.ResetRecord, is_last: bool, now: float) -> None:
        if self._streams.for_peer_record(record.stream_id, "RESET") is None:
            self._budget.idle.spend(now)
            return
        self._budget.stream_churn.spend(now)
        self._streams.forget(record.stream_id)
        self._events.append(StreamReset(record.stream_id, record.code, record.reason))

    def _on_ping(self, record: R.PingRecord, is_last: bool, now: float) -> None:
        self._budget.pings.spend(now)
        answer = self._pings.on_ping()
        if answer is PingAnswer.ANSWER:
            self._sender.queue(R.encode(R.PongRecord(record.ping_id)))
        elif answer is PingAnswer.FLOOD:
            self._events.append(SecurityNotice("ping_flood", "PINGs faster than we send"))

    def _on_pong(self, record: R.PongRecord, is_last: bool, now: float) -> None:
        rtt = self._pings.on_pong(record.ping_id, now)
        if rtt is None:
            self._budget.unsolicited_pongs.spend(now)
            self._events.append(SecurityNotice("unsolicited_pong", "PONG for no PING of ours"))
            return
        self._stats.last_rtt = rtt
        self._events.append(PongReceived(rtt))

    def _on_route_info(self, record: R.RouteInfoRecord, is_last: bool, now: float) -> None:
        self._events.append(RouteInfoReceived(record.payload))

    def _on_rekey_init(self, record: R.RekeyInitRecord, is_last: bool, now: float) -> None:
        self._budget.rekeys.spend(now)
        self._deadline_changes += 1
        switch = self._rekeying.on_init(record, self._current_epoch())
        if switch is not None:
            self._apply(switch, now)

    def _on_rekey_reply(self, record: R.RekeyReplyRecord, is_last: bool, now: float) -> None:
        _require_last(is_last, "REKEY_REPLY")
        self._apply(self._rekeying.on_reply(record), now)

    def _on_rekey_switch(self, record: R.RekeySwitchRecord, is_last: bool, now: float) -> None:
        _require_last(is_last, "REKEY_SWITCH")
        self._apply(self._rekeying.on_switch(record), now)

    def _on_close(self, record: R.CloseRecord, is_last: bool, now: float) -> None:
        self._state = _State.CLOSED
        self._deadline_changes += 1
        self._events.append(LinkClosed(record.reason))

    # ---------------------------------------------------------------- rekeying
    def _current_epoch(self) -> int:
        return max(self._sender.epoch, self._receiver.epoch)

    def _start_rekey_if_due(self, now: float) -> None:
        if (
            self._state is _State.ESTABLISHED
            and self._sender.rekey_due
            and not self._rekeying.running
        ):
            self._start_rekey(now)

    def _start_rekey(self, now: float) -> None:
        self._deadline_changes += 1
        switch = self._rekeying.start(self._current_epoch())
        if switch is not None:
            self._apply(switch, now)

    def _apply(self, switch: KeySwitch, now: float) -> None:
        """Carry out one rekey step in the order `KeySwitch` documents."""
        self._deadline_changes += 1
        if switch.receive_key is not None:
            self._receiver.install_key(switch.receive_key, switch.epoch, now)
        if switch.record is not None:
            self._sender.queue(R.encode(switch.record))
        if switch.send_key is not None:
            self._sender.seal_queued(now)  # the last messages under the old send key
            self._sender.install_key(switch.send_key, switch.epoch, now)
        if switch.completed:
            self._stats.rekeys += 1
            self._stats.key_epoch = self._current_epoch()
            self._events.append(Rekeyed(switch.initiated_by_us))


def _require_last(is_last: bool, what: str) -> None:
    if not is_last:
        raise MalformedRecord(f"{what} must be the last record of its transport message")


_RecordHandler = Callable[[LinkConnection, Any, bool, float], None]

RECORD_HANDLERS: Mapping[type[R.Record], _RecordHandler] = MappingProxyType(
    {
        R.DataRecord: LinkConnection._on_data,
        R.OpenRecord: LinkConnection._on_open,
        R.FinRecord: LinkConnection._on_fin,
        R.ResetRecord: LinkConnection._on_reset,
        R.WindowRecord: LinkConnection._on_window,
        R.PingRecord: LinkConnection._on_ping,
        R.PongRecord: LinkConnection._on_pong,
        R.RouteInfoRecord: LinkConnection._on_route_info,
        R.RekeyInitRecord: LinkConnection._on_rekey_init,
        R.RekeyReplyRecord: LinkConnection._on_rekey_reply,
        R.RekeySwitchRecord: LinkConnection._on_rekey_switch,
        R.CloseRecord: LinkConnection._on_close,
        R.RelayOpenRecord: LinkConnection._on_relay_open,
    }
)
"""The handler of every record type a received transport message can carry."""
