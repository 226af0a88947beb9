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

An end-to-end session reads no time: it has no timers (it is not rekeyed; the link below is),
and the timestamp of its handshake comes from the node's `TimestampIssuer`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from altmesh.protocol import constants as C
from altmesh.protocol.errors import (
    BadLength,
    EndToEndTruncated,
    HandshakeError,
    KeyRefused,
    LocalStateError,
    ProtocolError,
    ReplayedHandshake,
    StoreUnavailable,
    StreamStateError,
    VersionMismatch,
)
from altmesh.protocol.framing import FrameReader, frame, length_prefix
from altmesh.protocol.handshake import (
    InitiatorHandshake,
    ResponderHandshake,
    check_message_length,
    prologue,
)
from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.replay import ReorderWindow
from altmesh.protocol.tai64n import TimestampIssuer
from altmesh.protocol.transport import TransportCipher

_INIT_PAYLOAD = struct.Struct(f">BB{C.TAI64N_LEN}s")
_RESPONSE_PAYLOAD = struct.Struct(">BB")


def _check_version(version: int, flags: int) -> None:
    if version != C.PROTOCOL_VERSION:
        raise VersionMismatch(
            f"peer speaks protocol version {version}, we speak {C.PROTOCOL_VERSION}"
        )
    if flags != 0:
        raise HandshakeError(f"unknown end-to-end handshake flags 0x{flags:02x}")


class EndToEndSession:
    """One end of an end-to-end session.

    What the peer sent raises ProtocolErrors (after one, the session is dead); calls that do not
    fit the session's state (encrypting before the handshake or after CLOSE, feeding a dead
    session) raise LocalStateError.
    """

    def __init__(
        self,
        network: str,
        *,
        initiator: InitiatorHandshake | None,
        responder: ResponderHandshake | None,
        authorize: Callable[[bytes], bool] | None,
        replay_window: ReorderWindow | None,
        timestamps: TimestampIssuer | None,
    ) -> None:
        """Use `initiator()` or `responder()`."""
        self.network = network
        self._initiator = initiator
        self._responder = responder
        self._authorize = authorize
        self._replay_window = replay_window
        self._timestamps = timestamps
        self._frames = FrameReader()
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
        timestamps: TimestampIssuer,
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
            replay_window=None,
            timestamps=timestamps,
        )

    @classmethod
    def responder(
        cls,
        network: str,
        local_keys: Sequence[StaticKeyPair],
        *,
        authorize: Callable[[bytes], bool],
        replay_window: ReorderWindow,
    ) -> EndToEndSession:
        """The service side; `authorize(client_key)` may refuse clients (KeyRefused). Every
        session a service answers shares its one `replay_window`."""
        handshake = ResponderHandshake(prologue(C.E2E_PROLOGUE_LABEL, network), local_keys)
        return cls(
            network,
            initiator=None,
            responder=handshake,
            authorize=authorize,
            replay_window=replay_window,
            timestamps=None,
        )

    def start(self) -> bytes:
        """The initiator's first bytes (framed handshake message 1)."""
        if self._initiator is None or self._timestamps is None or self._started:
            raise LocalStateError("start() is for a new initiator only")
        self._started = True
        payload = _INIT_PAYLOAD.pack(C.PROTOCOL_VERSION, 0, self._timestamps.next())
        return frame(self._initiator.write_init(payload))

    def receive(self, data: bytes) -> list[bytes]:
        """Feed stream bytes; returns the plaintext chunks they completed. Raises ProtocolError
        (after which the session is dead: later calls raise LocalStateError)."""
        if self._failed:
            raise LocalStateError("end-to-end session failed earlier")
        if self._initiator is not None and not self._started:
            raise LocalStateError("initiator received data before start()")
        chunks: list[bytes] = []

        def on_frame(message: memoryview) -> bool:
            self._receive_frame(message, chunks)
            return True

        try:
            self._frames.feed(data, self._check_length, on_frame)
        except (ProtocolError, StoreUnavailable):
            self._failed = True
            self._send = self._receive = None
            raise
        return chunks

    def _receive_frame(self, message: memoryview, chunks: list[bytes]) -> None:
        if self._receive is not None:
            if self._close_received:
                raise StreamStateError("end-to-end message after the peer's CLOSE")
            plaintext = self._receive.decrypt(message)
            if plaintext:
                chunks.append(plaintext)
            else:  # the empty plaintext is CLOSE: the peer's authenticated end
                self._close_received = True
        elif self._responder is not None:
            self._receive_init(bytes(message))
        else:
            self._receive_response(bytes(message))

    def encrypt(self, plaintext: bytes) -> bytes:
        """Framed ciphertext of `plaintext` (split into messages of at most 65519 bytes)."""
        send = self._sendable()
        parts: list[bytes] = []
        view = memoryview(plaintext)
        step = C.MAX_PLAINTEXT_LEN
        for offset in range(0, len(plaintext), step):
            ciphertext = send.encrypt(view[offset : offset + step])
            parts.append(length_prefix(len(ciphertext)))
            parts.append(ciphertext)
        return b"".join(parts)

    def close(self) -> bytes:
        """Framed CLOSE: our direction ends here. Send it, after all data, before the stream's
        FIN; the peer refuses a FIN without it (truncation). `encrypt` may not be used after."""
        send = self._sendable()
        self._close_sent = True
        return frame(send.encrypt(b""))

    def _sendable(self) -> TransportCipher:
        if self._send is None:
            raise LocalStateError("end-to-end session not established (or failed)")
        if self._close_sent:
            raise LocalStateError("end-to-end session already sent CLOSE")
        return self._send

    def receive_end(self) -> None:
        """The stream's FIN arrived: the peer's direction ended. Raises EndToEndTruncated unless
        the peer's CLOSE came first and no partial message is left (the session is then dead,
        as after any ProtocolError from `receive`)."""
        if self._failed:
            raise LocalStateError("end-to-end session failed earlier")
        partial = self._frames.buffered
        if self._close_received and not partial:
            return
        self._failed = True
        self._send = self._receive = None
        if partial:
            raise EndToEndTruncated(
                f"stream ended inside an end-to-end message ({partial} bytes of it)"
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
        assert self._authorize is not None and self._replay_window is not None
        if not self._authorize(remote):
            raise KeyRefused("the client's static key is not allowed to use this service")
        if not self._replay_window.check_and_record(remote, timestamp):
            raise ReplayedHandshake("end-to-end handshake timestamp replayed or too old")
        reply, keys = responder.write_response(_RESPONSE_PAYLOAD.pack(C.PROTOCOL_VERSION, 0))
        self._output += frame(reply)
        self._remote_static = remote
        self._send = TransportCipher(keys.send_key, 0)
        self._receive = TransportCipher(keys.receive_key, 0)
        self._proven = True

    def _receive_response(self, message: bytes) -> None:
        initiator = self._initiator
        assert initiator is not None
        payload, keys = initiator.read_response(message)
        if len(payload) != _RESPONSE_PAYLOAD.size:
            raise HandshakeError(f"end-to-end payload 2 must be {_RESPONSE_PAYLOAD.size} bytes")
        _check_version(*_RESPONSE_PAYLOAD.unpack(payload))
        self._send = TransportCipher(keys.send_key, 0)
        self._receive = TransportCipher(keys.receive_key, 0)
        self._proven = True
