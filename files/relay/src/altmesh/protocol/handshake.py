"""Noise IK handshakes (through `noiseprotocol`) and the altmesh handshake payloads.

`noiseprotocol` raises raw exceptions (cryptography's InvalidTag, ValueError for a low-order
point, its own NoiseError types); everything is turned into typed ProtocolErrors here. After a
failed message a noiseprotocol object is unusable, so each attempt uses a fresh one.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]

from altmesh.protocol.constants import (
    ADDRESS_LEN,
    HANDSHAKE_FLAG_PROBE,
    HANDSHAKE_FLAG_REKEY,
    INITIATOR_PAYLOAD_LEN,
    KEY_LEN,
    MAX_NETWORK_NAME_LEN,
    MAX_STREAM_WINDOW,
    MAX_STREAMS_LIMIT,
    NOISE_PROTOCOL_NAME,
    PROTOCOL_VERSION,
    RESPONDER_PAYLOAD_LEN,
    TAI64N_LEN,
)
from altmesh.protocol.errors import (
    HandshakeDecryptError,
    HandshakeError,
    InvalidArgument,
    LocalStateError,
    Oversize,
    TruncatedHandshake,
    VersionMismatch,
)
from altmesh.protocol.keys import StaticKeyPair

_KNOWN_FLAGS = HANDSHAKE_FLAG_REKEY | HANDSHAKE_FLAG_PROBE
FLAG_REKEY = HANDSHAKE_FLAG_REKEY
FLAG_PROBE = HANDSHAKE_FLAG_PROBE
_INITIATOR_PAYLOAD = struct.Struct(f">BB{TAI64N_LEN}s{ADDRESS_LEN}sII")
_RESPONDER_PAYLOAD = struct.Struct(f">BB{ADDRESS_LEN}sII")
assert _INITIATOR_PAYLOAD.size == INITIATOR_PAYLOAD_LEN
assert _RESPONDER_PAYLOAD.size == RESPONDER_PAYLOAD_LEN


def prologue(label: bytes, network: str) -> bytes:
    """label || version (1 byte) || len(network) (1 byte) || network name (UTF-8)."""
    name = network.encode("utf-8")
    if not 1 <= len(name) <= MAX_NETWORK_NAME_LEN:
        raise InvalidArgument(f"network name must be 1..{MAX_NETWORK_NAME_LEN} bytes of UTF-8")
    return label + bytes((PROTOCOL_VERSION, len(name))) + name


@dataclass(frozen=True)
class SessionKeys:
    """The transport keys a completed handshake yields (Noise Split())."""

    send_key: bytes
    receive_key: bytes
    handshake_hash: bytes


@dataclass(frozen=True)
class InitiatorPayload:
    """Plaintext of a link's handshake message 1."""

    flags: int
    timestamp: bytes
    address: ipaddress.IPv6Address
    stream_window: int
    max_streams: int

    def encode(self) -> bytes:
        return _INITIATOR_PAYLOAD.pack(
            PROTOCOL_VERSION,
            self.flags,
            self.timestamp,
            self.address.packed,
            self.stream_window,
            self.max_streams,
        )

    @classmethod
    def decode(cls, data: bytes) -> InitiatorPayload:
        if len(data) != INITIATOR_PAYLOAD_LEN:
            raise HandshakeError(
                f"initiator payload must be {INITIATOR_PAYLOAD_LEN} bytes, got {len(data)}"
            )
        version, flags, timestamp, address, window, streams = _INITIATOR_PAYLOAD.unpack(data)
        _check_common(version, flags, window, streams)
        return cls(flags, timestamp, ipaddress.IPv6Address(address), window, streams)


@dataclass(frozen=True)
class ResponderPayload:
    """Plaintext of a link's handshake message 2."""

    flags: int
    address: ipaddress.IPv6Address
    stream_window: int
    max_streams: int

    def encode(self) -> bytes:
        return _RESPONDER_PAYLOAD.pack(
            PROTOCOL_VERSION, self.flags, self.address.packed, self.stream_window, self.max_streams
        )

    @classmethod
    def decode(cls, data: bytes) -> ResponderPayload:
        if len(data) != RESPONDER_PAYLOAD_LEN:
            raise HandshakeError(
                f"responder payload must be {RESPONDER_PAYLOAD_LEN} bytes, got {len(data)}"
            )
        version, flags, address, window, streams = _RESPONDER_PAYLOAD.unpack(data)
        _check_common(version, flags, window, streams)
        return cls(flags, ipaddress.IPv6Address(address), window, streams)


def _check_common(version: int, flags: int, window: int, streams: int) -> None:
    if version != PROTOCOL_VERSION:
        raise VersionMismatch(
            f"peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}"
        )
    if flags & ~_KNOWN_FLAGS:
        raise HandshakeError(f"unknown handshake flags 0x{flags:02x}")
    if not 1 <= window <= MAX_STREAM_WINDOW:
        raise HandshakeError(f"stream window {window} outside 1..{MAX_STREAM_WINDOW}")
    if streams > MAX_STREAMS_LIMIT:
        raise HandshakeError(f"max streams {streams} above {MAX_STREAMS_LIMIT}")


def check_message_length(length: int, expected: int, what: str) -> None:
    """Handshake messages have a fixed size; anything else is truncated or oversize."""
    if length < expected:
        raise TruncatedHandshake(f"{what} is {length} bytes, must be {expected}")
    if length > expected:
        raise Oversize(f"{what} is {length} bytes, must be {expected}")


def _new_connection(prologue_bytes: bytes, local: StaticKeyPair) -> Any:
    connection = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
    connection.set_prologue(prologue_bytes)
    keypair = local.noise_keypair
    if type(keypair) is connection.noise_protocol.dh_fn.klass:
        # `set_keypair_from_private_bytes(Keypair.STATIC, ...)` without making the key again
        connection.noise_protocol.keypairs["s"] = keypair
    else:  # another noiseprotocol backend
        connection.set_keypair_from_private_bytes(Keypair.STATIC, local.private)
    return connection


def _keys(connection: Any, initiator: bool) -> SessionKeys:
    protocol = connection.noise_protocol
    send_key = bytes(protocol.cipher_state_encrypt.k)
    receive_key = bytes(protocol.cipher_state_decrypt.k)
    return SessionKeys(send_key, receive_key, bytes(protocol.handshake_hash))


class InitiatorHandshake:
    """The initiator's half of one IK handshake: write message 1, read message 2."""

    def __init__(
        self,
        prologue_bytes: bytes,
        local: StaticKeyPair,
        remote_public: bytes,
        *,
        ephemeral_private: bytes | None = None,
    ) -> None:
        if len(remote_public) != KEY_LEN:
            raise InvalidArgument(f"remote public key must be {KEY_LEN} bytes")
        self.local = local
        self.remote_public = remote_public
        self._connection = _new_connection(prologue_bytes, local)
        self._connection.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_public)
        if ephemeral_private is not None:
            # Only for recorded test vectors: a fixed ephemeral key breaks forward secrecy.
            self._connection.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private)
        self._connection.set_as_initiator()
        self._connection.start_handshake()

    def write_init(self, payload: bytes) -> bytes:
        return bytes(self._connection.write_message(payload))

    def read_response(self, message: bytes) -> tuple[bytes, SessionKeys]:
        """Payload of message 2 and the session keys; HandshakeDecryptError if it fails."""
        try:
            payload = bytes(self._connection.read_message(message))
        except Exception as error:  # noiseprotocol raises untyped exceptions
            raise HandshakeDecryptError(
                "handshake response failed authentication (wrong key, network or corruption)"
            ) from error
        return payload, _keys(self._connection, initiator=True)


class ResponderHandshake:
    """The responder's half: read message 1 (trying each local key), write message 2."""

    def __init__(
        self,
        prologue_bytes: bytes,
        local_keys: Sequence[StaticKeyPair],
        *,
        ephemeral_private: bytes | None = None,
    ) -> None:
        if not local_keys:
            raise InvalidArgument("a responder needs at least one static key")
        self._prologue = prologue_bytes
        self._local_keys = tuple(local_keys)
        self._ephemeral_private = ephemeral_private
        self._connection: Any = None
        self.local: StaticKeyPair | None = None
        self.remote_static: bytes | None = None

    def read_init(self, message: bytes) -> bytes:
        """Payload of message 1; sets `local` (the key it was for) and `remote_static`."""
        for local in self._local_keys:
            connection = _new_connection(self._prologue, local)
            if self._ephemeral_private is not None:
                connection.set_keypair_from_private_bytes(
                    Keypair.EPHEMERAL, self._ephemeral_private
                )
            connection.set_as_responder()
            connection.start_handshake()
            try:
                payload = bytes(connection.read_message(message))
            except Exception:  # noqa: S112 - wrong key: try the next one (rotation)
                continue
            self._connection = connection
            self.local = local
            self.remote_static = bytes(connection.noise_protocol.handshake_state.rs.public_bytes)
            return payload
        raise HandshakeDecryptError(
            "handshake message 1 failed authentication "
            "(not for our key, another network or protocol version, or corrupted)"
        )

    def write_response(self, payload: bytes) -> tuple[bytes, SessionKeys]:
        if self._connection is None:
            raise LocalStateError("write_response before a valid message 1")
        message = bytes(self._connection.write_message(payload))
        return message, _keys(self._connection, initiator=False)
