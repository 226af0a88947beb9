"""End-to-end sessions: Noise IK between the two end nodes, carried in one stream's bytes.

Relays forward the stream's bytes and see only ciphertext. Inside the stream the bytes use the
link's framing (2-byte big-endian length + Noise message) with their own prologue
(`altmesh-e2e`, version, network), so a link handshake can never be used as an end-to-end one or
the other way round. See docs/protocol.md, "End-to-end sessions".

The end of each direction is authenticated: a sender's last message is CLOSE (an empty
plaintext, sealed like any other message), and a receiver treats the stream's FIN without a CLOSE
before it as truncation (`EndToEndTruncated`). FIN itself is a link record that every relay on
the path can forge, so without CLOSE a relay could cut a stream short and the application would
take the shortened bytes for the whole.
"""

from __future__ import annotations

import struct
import time
import weakref
from collections.abc import Callable, Sequence

from altmesh.protocol import constants as C
from altmesh.protocol.errors import (
    BadLength,
    EndToEndTruncated,
    HandshakeError,
    KeyRefused,
    ProtocolError,
    ReplayedHandshake,
    StreamStateError,
    VersionMismatch,
)
from altmesh.protocol.handshake import (
    InitiatorHandshake,
    ResponderHandshake,
    check_message_length,
    prologue,
)
from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.replay import ReorderWindow, ReplayStore
from altmesh.protocol.tai64n import next_timestamp
from altmesh.protocol.transport import TransportCipher

_INIT_PAYLOAD = struct.Struct(f">BB{C.TAI64N_LEN}s")
_RESPONSE_PAYLOAD = struct.Struct(">BB")

# One reorder window per replay store: every session a node answers shares it.
_windows: weakref.WeakKeyDictionary[object, ReorderWindow] = weakref.WeakKeyDictionary()
_fallback_windows: dict[int, ReorderWindow] = {}


def _window_for(store: ReplayStore) -> ReorderWindow:
    try:
        window = _windows.get(store)
        if window is None:
            window = ReorderWindow(C.E2E_REORDER_WINDOW, C.E2E_REORDER_KEYS)
            _windows[store] = window
        return window
    except TypeError:  # not weak-referenceable
        return _fallback_windows.setdefault(
            id(store), ReorderWindow(C.E2E_REORDER_WINDOW, C.E2E_REORDER_KEYS)
        )


def _check_version(version: int, flags: int) -> None:
    if version != C.PROTOCOL_VERSION:
        raise VersionMismatch(
            f"peer speaks protocol version {version}, we speak {C.PROTOCOL_VERSION}"
        )
    if flags != 0:
        raise HandshakeError(f"unknown end-to-end handshake flags 0x{flags:02x}")


class EndToEndSession:
    """One end of an end-to-end session."""

    def __init__(
        self,
        network: str,
        *,
        initiator: InitiatorHandshake | None,
        responder: ResponderHandshake | None,
        authorize: Callable[[bytes], bool] | None,
        replay_store: ReplayStore | None,
        wallclock: Callable[[], float],
    ) -> None:
        """Use `initiator()` or `responder()`."""
        self.network = network
        self._initiator = initiator
        self._responder = responder
        self._authorize = authorize
        self._replay_store = replay_store
        self._wallclock = wallclock
        self._inbound = bytearray()
        self._output = bytearray()
        self._send: TransportCipher | None = None
        self._receive: TransportCipher | None = None
        self._remote_static: bytes | None = (
            initiator.remote_public if initiator is not None else None
        )
        self._started = False
        self._failed = False
        self._proven = False  # the handshake completed: _remote_static is the peer's key
        self._close_sent = False
        self._close_received = False

    @classmethod
    def initiator(
        cls,
        network: str,
        local: StaticKeyPair,
        remote_public: bytes,
        *,
        wallclock: Callable[[], float] = time.time,
        ephemeral_private: bytes | None = None,
    ) -> EndToEndSession:
        """The client side; `remote_public` is the service's key (from DNS)."""
        handshake = InitiatorHandshake(
            prologue(C.E2E_PROLOGUE_LABEL, network),
            local,
            remote_public,
            ephemeral_private=ephemeral_private,
        )
        return cls(
            network,
            initiator=handshake,
            responder=None,
            authorize=None,
            replay_store=None,
            wallclock=wallclock,
        )

    @classmethod
    def responder(
        cls,
        network: str,
        local_keys: Sequence[StaticKeyPair],
        *,
        authorize: Callable[[bytes], bool],
        replay_store: ReplayStore,
        wallclock: Callable[[], float] = time.time,
    ) -> EndToEndSession:
        """The service side; `authorize(client_key)` may refuse clients (KeyRefused)."""
        handshake = ResponderHandshake(prologue(C.E2E_PROLOGUE_LABEL, network), local_keys)
        return cls(
            network,
            initiator=None,
            responder=handshake,
            authorize=authorize,
            replay_store=replay_store,
            wallclock=wallclock,
        )

    def start(self) -> bytes:
        """The initiator's first bytes (framed handshake message 1)."""
        if self._initiator is None or self._started:
            raise StreamStateError("start() is for a new initiator only")
        self._started = True
        payload = _INIT_PAYLOAD.pack(C.PROTOCOL_VERSION, 0, next_timestamp(self._wallclock))
        return _frame(self._initiator.write_init(payload))

    def receive(self, data: bytes) -> list[bytes]:
        """Feed stream bytes; returns the plaintext chunks they completed. Raises ProtocolError
        (after which the session is dead: later calls raise StreamStateError)."""
        if self._failed:
            raise StreamStateError("end-to-end session failed earlier")
        chunks: list[bytes] = []
        try:
            if self._inbound:
                self._inbound += data
                consumed = self._receive_frames(self._inbound, chunks)
                del self._inbound[:consumed]
            else:  # no partial frame waiting: parse `data` in place
                consumed = self._receive_frames(data, chunks)
                if consumed < len(data):
                    self._inbound = bytearray(data[consumed:])
        except ProtocolError:
            self._failed = True
            self._send = self._receive = None
            raise
        return chunks

    def _receive_frames(self, source: bytes | bytearray, chunks: list[bytes]) -> int:
        view = memoryview(source)
        offset = 0
        end = len(source)
        while end - offset >= C.LENGTH_PREFIX_LEN:
            length = (source[offset] << 8) | source[offset + 1]
            self._check_length(length)
            frame_end = offset + C.LENGTH_PREFIX_LEN + length
            if frame_end > end:
                break
            frame = view[offset + C.LENGTH_PREFIX_LEN : frame_end]
            offset = frame_end
            if self._receive is not None:
                if self._close_received:
                    raise StreamStateError("end-to-end message after the peer's CLOSE")
                plaintext = self._receive.decrypt(frame)
                if plaintext:
                    chunks.append(plaintext)
                else:  # the empty plaintext is CLOSE: the peer's authenticated end
                    self._close_received = True
            elif self._responder is not None:
                self._receive_init(bytes(frame))
            else:
                self._receive_response(bytes(frame))
        return offset

    def encrypt(self, plaintext: bytes) -> bytes:
        """Framed ciphertext of `plaintext` (split into messages of at most 65519 bytes)."""
        if self._send is None:
            raise StreamStateError("end-to-end session not established (or failed)")
        if self._close_sent:
            raise StreamStateError("end-to-end session already sent CLOSE")
        send = self._send
        parts: list[bytes] = []
        view = memoryview(plaintext)
        step = C.MAX_PLAINTEXT_LEN
        for offset in range(0, len(plaintext), step):
            ciphertext = send.encrypt(view[offset : offset + step])
            parts.append(len(ciphertext).to_bytes(2, "big"))
            parts.append(ciphertext)
        return b"".join(parts)

    def close(self) -> bytes:
        """Framed CLOSE: our direction ends here. Send it, after all data, before the stream's
        FIN; the peer refuses a FIN without it (truncation). `encrypt` may not be used after."""
        if self._send is None:
            raise StreamStateError("end-to-end session not established (or failed)")
        if self._close_sent:
            raise StreamStateError("end-to-end session already sent CLOSE")
        self._close_sent = True
        return _frame(self._send.encrypt(b""))

    def receive_end(self) -> None:
        """The stream's FIN arrived: the peer's direction ended. Raises EndToEndTruncated unless
        the peer's CLOSE came first and no partial message is left (the session is then dead,
        as after any ProtocolError from `receive`)."""
        if self._failed:
            raise StreamStateError("end-to-end session failed earlier")
        if self._close_received and not self._inbound:
            return
        self._failed = True
        self._send = self._receive = None
        if self._inbound:
            raise EndToEndTruncated(
                f"stream ended inside an end-to-end message ({len(self._inbound)} bytes of it)"
            )
        raise EndToEndTruncated("stream ended without the end-to-end CLOSE")

    @property
    def peer_closed(self) -> bool:
        """Whether the peer's authenticated CLOSE was received (its direction is complete)."""
        return self._close_received

    def pending_output(self) -> bytes:
        """Bytes the session itself must send (the responder's handshake reply); drains."""
        data = bytes(self._output)
        self._output.clear()
        return data

    @property
    def established(self) -> bool:
        """Whether both handshake messages were exchanged (encrypt may be used)."""
        return self._send is not None

    @property
    def remote_static(self) -> bytes | None:
        """The peer's proven static key: None until the handshake completed on this side
        (responder: after message 1, initiator: after message 2); kept after a failure, so the
        failure can name the peer."""
        return self._remote_static if self._proven else None

    # ---------------------------------------------------------------- internals
    def _check_length(self, length: int) -> None:
        if self._receive is not None:
            if length < C.TAG_LEN:
                raise BadLength(f"end-to-end message of {length} bytes is shorter than its MAC")
        elif self._responder is not None:
            check_message_length(length, C.E2E_HANDSHAKE_INIT_LEN, "end-to-end handshake message 1")
        else:
            if not self._started:
                raise StreamStateError("initiator received data before start()")
            check_message_length(
                length, C.E2E_HANDSHAKE_RESPONSE_LEN, "end-to-end handshake message 2"
            )

    def _receive_init(self, message: bytes) -> None:
        responder = self._responder
        assert responder is not None
        payload = responder.read_init(message)
        assert responder.remote_static is not None
        remote = responder.remote_static
        if len(payload) != _INIT_PAYLOAD.size:
            raise HandshakeError(f"end-to-end payload 1 must be {_INIT_PAYLOAD.size} bytes")
        version, flags, timestamp = _INIT_PAYLOAD.unpack(payload)
        _check_version(version, flags)
        assert self._authorize is not None and self._replay_store is not None
        if not self._authorize(remote):
            raise KeyRefused("the client's static key is not allowed to use this service")
        window = _window_for(self._replay_store)
        if not window.check_and_record(self._replay_store, remote, timestamp):
            raise ReplayedHandshake("end-to-end handshake timestamp replayed or too old")
        reply, keys = responder.write_response(_RESPONSE_PAYLOAD.pack(C.PROTOCOL_VERSION, 0))
        self._output += _frame(reply)
        self._remote_static = remote
        self._send = TransportCipher(keys.send_key, 0.0, 0)
        self._receive = TransportCipher(keys.receive_key, 0.0, 0)
        self._proven = True

    def _receive_response(self, message: bytes) -> None:
        initiator = self._initiator
        assert initiator is not None
        payload, keys = initiator.read_response(message)
        if len(payload) != _RESPONSE_PAYLOAD.size:
            raise HandshakeError(f"end-to-end payload 2 must be {_RESPONSE_PAYLOAD.size} bytes")
        _check_version(*_RESPONSE_PAYLOAD.unpack(payload))
        self._send = TransportCipher(keys.send_key, 0.0, 0)
        self._receive = TransportCipher(keys.receive_key, 0.0, 0)
        self._proven = True


def _frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message
