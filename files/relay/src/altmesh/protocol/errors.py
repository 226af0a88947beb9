"""Typed errors of the core, in two families that never mix (h11's distinction).

- `ProtocolError`: a fault in what the *peer* sent. Every fault in peer input raises exactly one
  of these; any other exception from peer input is a bug (the fuzz targets check this). `kind` is
  a stable snake_case reason, used verbatim in security events.
- `LocalProtocolError`: a mistake of the *local application* (a bad argument, sending on a stream
  it ended, using a link that is not established) or a request the link cannot grant now (the
  peer's stream limit). It says nothing about the peer and is never a security event.

Messages say what was wrong; they never hold key material.
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


class MalformedRouteInfo(ProtocolError):
    """A ROUTE_INFO payload meant for this node does not match its layout (STREAM_PATH)."""

    kind = "route_info_malformed"


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


class ControlFlood(ProtocolError):
    """The peer sent more records of one kind than the link's limits allow (docs/protocol.md
    section 9): PINGs, unsolicited PONGs, rekeys, OPEN/RESET churn, or records that change
    nothing (for finished streams, empty, tiny WINDOWs)."""

    kind = "control_flood"


class PeerTimeout(ProtocolError):
    """Nothing arrived from the peer for longer than the idle timeout."""

    kind = "peer_timeout"


# ---------------------------------------------------------------------------- local errors


class LocalProtocolError(Exception):
    """Base of every mistake of the local application; never raised because of peer input."""

    kind: str = "local_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(LocalProtocolError, ValueError):
    """An argument is outside what the protocol allows (a port, a key length, a window size).

    Also a ValueError, so code that validates settings can catch either.
    """

    kind = "invalid_argument"


class LocalStateError(LocalProtocolError):
    """The call does not fit the state of the stream or session (data after our own FIN, a
    stream id never opened, encrypting before an end-to-end session is established)."""

    kind = "local_state"


class LinkNotEstablished(LocalStateError):
    """The link is not established: the handshake is not complete, or the link was closed or
    failed. An application can meet it in a race with the link's end; it then drops the call."""

    kind = "link_not_established"


class StreamLimitReached(LocalProtocolError):
    """No stream can be opened now: the peer's limit of open streams is reached (one must end
    first), or this link used up its stream ids (a new link is needed)."""

    kind = "stream_limit"


class StoreUnavailable(LocalProtocolError):
    """The replay store could not record an accepted handshake timestamp (a full disk, an I/O
    error): the handshake is refused, because accepting it unrecorded would let it be replayed
    after a restart. A fault of this node, not of the peer."""

    kind = "store_unavailable"


class NonceSpaceExhausted(LocalProtocolError):
    """A key has sealed 2^64 - 1 messages, the most Noise allows: nothing more can be sent under
    it. Links rekey long before (reject_after_messages); an end-to-end session needs a new
    stream."""

    kind = "nonce_exhausted"
