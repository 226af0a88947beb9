"""Typed protocol errors. `kind` is a stable snake_case reason, used verbatim in security events.

Every fault in peer input raises exactly one of these; any other exception from peer input is a
bug (the fuzz targets check this). The message says what was wrong; it never holds key material.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every protocol fault. After one is raised by a link, the link is dead."""

    kind: str = "protocol_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FramingError(ProtocolError):
    """The 2-byte length framing is violated."""

    kind = "framing_error"


class BadLength(FramingError):
    """A frame is shorter than the smallest valid message in this state."""

    kind = "bad_length"


class Oversize(FramingError):
    """A frame or record is larger than allowed."""

    kind = "oversize"


class Truncated(FramingError):
    """The byte stream ended in the middle of a frame, or a message is shorter than its layout."""

    kind = "truncated"


class HandshakeError(ProtocolError):
    """A handshake message is malformed, out of place, or its payload is invalid."""

    kind = "handshake_failed"


class TruncatedHandshake(HandshakeError):
    """A handshake message is shorter (or longer) than the fixed IK message size."""

    kind = "handshake_truncated"


class HandshakeTimeout(HandshakeError):
    """The peer did not complete the handshake in time."""

    kind = "handshake_timeout"


class VersionMismatch(HandshakeError):
    """The peer speaks another protocol version."""

    kind = "version_mismatch"


class HandshakeDecryptError(HandshakeError):
    """A handshake message failed authentication: wrong key, wrong network/prologue, corruption."""

    kind = "handshake_decrypt_failed"


class ReplayedHandshake(HandshakeError):
    """The initiator's TAI64N timestamp is not newer than the last one accepted for its key."""

    kind = "replayed_handshake"


class KeyRefused(HandshakeError):
    """The authoriser refused the peer's static key."""

    kind = "key_refused"


class AddressMismatch(HandshakeError):
    """The peer claimed an address that is not derived from its static key in this network."""

    kind = "address_mismatch"


class DecryptError(ProtocolError):
    """A transport message failed authentication (bad MAC, wrong counter, corruption)."""

    kind = "decrypt_failed"


class UnknownRecordType(ProtocolError):
    """A record carries a type code this version does not know."""

    kind = "unknown_record_type"


class MalformedRecord(ProtocolError):
    """A record's body does not match its type's layout."""

    kind = "malformed_record"


class FlowControlError(ProtocolError):
    """The peer sent beyond its credit, or opened more streams than allowed."""

    kind = "flow_control"


class EndToEndTruncated(ProtocolError):
    """A stream ended (link FIN) without the end-to-end session's authenticated CLOSE: a relay
    (or anyone on the path) cut the stream short."""

    kind = "e2e_truncated"


class StreamStateError(ProtocolError):
    """A stream record does not fit the stream's state (unknown id, data after FIN, reuse)."""

    kind = "stream_state"


class RekeyError(ProtocolError):
    """A rekey record is out of sequence or its handshake is invalid."""

    kind = "rekey_failed"


class SessionExpired(ProtocolError):
    """The session keys are older than reject_after_time (or used too often): never used."""

    kind = "session_expired"


class PeerTimeout(ProtocolError):
    """Nothing arrived from the peer for longer than the idle timeout."""

    kind = "peer_timeout"


class LinkClosedError(ProtocolError):
    """The link is closed or failed; nothing more can be sent or received on it."""

    kind = "link_closed"
