"""Records: what the plaintext of a link transport message is made of.

A plaintext is a sequence of records, each `type (1) | length (2, big-endian) | body (length)`.
The body layouts are in docs/protocol.md; `parse_records` + `decode_record` check every one and
raise UnknownRecordType / MalformedRecord / Truncated, never anything else.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from altmesh.protocol.constants import (
    MAX_HOPS_LEFT,
    MAX_REASON_LEN,
    MAX_ROUTE_INFO_LEN,
    PING_ID_LEN,
    RECORD_HEADER_LEN,
    RecordType,
)
from altmesh.protocol.errors import (
    InvalidArgument,
    MalformedRecord,
    Truncated,
    UnknownRecordType,
)

_HEADER = struct.Struct(">BH")
_STREAM_ID = struct.Struct(">I")
_DATA_HEADER = struct.Struct(">BHI")  # a DATA record's header and stream id
RECORD_HEADER = _HEADER
"""type (1) | length (2): the header of every record."""
STREAM_ID = _STREAM_ID
"""The stream id that starts the body of every stream record."""
_OPEN = struct.Struct(">I16sH")
_RELAY_OPEN = struct.Struct(">I16sHB")
_RESET_HEAD = struct.Struct(">IH")
_WINDOW = struct.Struct(">II")
_EPOCH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class OpenRecord:
    stream_id: int
    destination: ipaddress.IPv6Address
    port: int


@dataclass(frozen=True, slots=True)
class RelayOpenRecord:
    """OPEN between two relays: also how many more relay links the stream may cross."""

    stream_id: int
    destination: ipaddress.IPv6Address
    port: int
    hops_left: int


@dataclass(frozen=True, slots=True)
class DataRecord:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FinRecord:
    stream_id: int


@dataclass(frozen=True, slots=True)
class ResetRecord:
    stream_id: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class WindowRecord:
    stream_id: int
    increment: int


@dataclass(frozen=True, slots=True)
class PingRecord:
    ping_id: bytes


@dataclass(frozen=True, slots=True)
class PongRecord:
    ping_id: bytes


@dataclass(frozen=True, slots=True)
class RouteInfoRecord:
    payload: bytes


@dataclass(frozen=True, slots=True)
class RekeyInitRecord:
    epoch: int
    message: bytes


@dataclass(frozen=True, slots=True)
class RekeyReplyRecord:
    epoch: int
    message: bytes


@dataclass(frozen=True, slots=True)
class RekeySwitchRecord:
    epoch: int


@dataclass(frozen=True, slots=True)
class CloseRecord:
    reason: str


Record = (
    OpenRecord
    | DataRecord
    | FinRecord
    | ResetRecord
    | WindowRecord
    | PingRecord
    | PongRecord
    | RouteInfoRecord
    | RekeyInitRecord
    | RekeyReplyRecord
    | RekeySwitchRecord
    | CloseRecord
    | RelayOpenRecord
)


# ---------------------------------------------------------------------------- encoding


def _record(record_type: int, body: bytes) -> bytes:
    return _HEADER.pack(record_type, len(body)) + body


def data_header(stream_id: int, data_len: int) -> bytes:
    """Header and stream id of a DATA record (the data follows); the hot path."""
    return _DATA_HEADER.pack(RecordType.DATA, 4 + data_len, stream_id)


def _reason_bytes(reason: str) -> bytes:
    raw = reason.encode("utf-8", errors="replace")[:MAX_REASON_LEN]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")


def encode(record: Record) -> bytes:
    """The wire bytes of one record."""
    match record:
        case DataRecord(stream_id, data):
            return data_header(stream_id, len(data)) + data
        case OpenRecord(stream_id, destination, port):
            return _record(RecordType.OPEN, _OPEN.pack(stream_id, destination.packed, port))
        case RelayOpenRecord(stream_id, destination, port, hops_left):
            if not 0 <= hops_left <= MAX_HOPS_LEFT:
                raise InvalidArgument(f"hops_left {hops_left} outside 0..{MAX_HOPS_LEFT}")
            body = _RELAY_OPEN.pack(stream_id, destination.packed, port, hops_left)
            return _record(RecordType.RELAY_OPEN, body)
        case FinRecord(stream_id):
            return _record(RecordType.FIN, _STREAM_ID.pack(stream_id))
        case ResetRecord(stream_id, code, reason):
            body = _RESET_HEAD.pack(stream_id, code) + _reason_bytes(reason)
            return _record(RecordType.RESET, body)
        case WindowRecord(stream_id, increment):
            return _record(RecordType.WINDOW, _WINDOW.pack(stream_id, increment))
        case PingRecord(ping_id):
            return _record(RecordType.PING, ping_id)
        case PongRecord(ping_id):
            return _record(RecordType.PONG, ping_id)
        case RouteInfoRecord(payload):
            if len(payload) > MAX_ROUTE_INFO_LEN:
                raise InvalidArgument(f"route info is at most {MAX_ROUTE_INFO_LEN} bytes")
            return _record(RecordType.ROUTE_INFO, payload)
        case RekeyInitRecord(epoch, message):
            return _record(RecordType.REKEY_INIT, _EPOCH.pack(epoch) + message)
        case RekeyReplyRecord(epoch, message):
            return _record(RecordType.REKEY_REPLY, _EPOCH.pack(epoch) + message)
        case RekeySwitchRecord(epoch):
            return _record(RecordType.REKEY_SWITCH, _EPOCH.pack(epoch))
        case CloseRecord(reason):
            return _record(RecordType.CLOSE, _reason_bytes(reason))
    raise InvalidArgument(f"not a record: {record!r}")


# ---------------------------------------------------------------------------- decoding


def parse_records(plaintext: bytes) -> Iterator[tuple[int, memoryview, bool]]:
    """(type, body, is_last) of every record; Truncated if a record overruns the plaintext.

    Bodies are views into `plaintext` (no copy); `decode_record` copies what it keeps.
    """
    view = memoryview(plaintext)
    offset = 0
    end = len(plaintext)
    while offset < end:
        if end - offset < RECORD_HEADER_LEN:
            raise Truncated(f"record header cut short at offset {offset} of {end}")
        record_type, length = _HEADER.unpack_from(plaintext, offset)
        start = offset + RECORD_HEADER_LEN
        offset = start + length
        if offset > end:
            raise Truncated(
                f"record of type 0x{record_type:02x} claims {length} bytes, "
                f"only {end - start} remain"
            )
        yield record_type, view[start:offset], offset == end


def _text(body: memoryview, what: str) -> str:
    if len(body) > MAX_REASON_LEN:
        raise MalformedRecord(f"{what} is {len(body)} bytes, at most {MAX_REASON_LEN}")
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRecord(f"{what} is not valid UTF-8") from None


def _exact(body: memoryview, size: int, name: str) -> None:
    if len(body) != size:
        raise MalformedRecord(f"{name} record body must be {size} bytes, got {len(body)}")


def _at_least(body: memoryview, size: int, name: str) -> None:
    if len(body) < size:
        raise MalformedRecord(f"{name} record body must be at least {size} bytes, got {len(body)}")


def _nonzero_stream(stream_id: int, name: str) -> int:
    if stream_id == 0:
        raise MalformedRecord(f"{name} record for stream 0 (reserved)")
    return stream_id


def decode_record(record_type: int, body: memoryview) -> Record:
    """The typed record of one (type, body) pair from `parse_records`."""
    if record_type == RecordType.DATA:
        _at_least(body, 4, "DATA")
        return DataRecord(_nonzero_stream(_STREAM_ID.unpack_from(body)[0], "DATA"), bytes(body[4:]))
    if record_type == RecordType.OPEN:
        _exact(body, _OPEN.size, "OPEN")
        stream_id, destination, port = _OPEN.unpack(body)
        return OpenRecord(
            _nonzero_stream(stream_id, "OPEN"), ipaddress.IPv6Address(destination), port
        )
    if record_type == RecordType.FIN:
        _exact(body, 4, "FIN")
        return FinRecord(_nonzero_stream(_STREAM_ID.unpack(body)[0], "FIN"))
    if record_type == RecordType.RESET:
        _at_least(body, _RESET_HEAD.size, "RESET")
        stream_id, code = _RESET_HEAD.unpack_from(body)
        reason = _text(body[_RESET_HEAD.size :], "RESET reason")
        return ResetRecord(_nonzero_stream(stream_id, "RESET"), code, reason)
    if record_type == RecordType.WINDOW:
        _exact(body, _WINDOW.size, "WINDOW")
        stream_id, increment = _WINDOW.unpack(body)
        if increment == 0:
            raise MalformedRecord("WINDOW record with a zero increment")
        return WindowRecord(_nonzero_stream(stream_id, "WINDOW"), increment)
    if record_type == RecordType.PING:
        _exact(body, PING_ID_LEN, "PING")
        return PingRecord(bytes(body))
    if record_type == RecordType.PONG:
        _exact(body, PING_ID_LEN, "PONG")
        return PongRecord(bytes(body))
    if record_type == RecordType.ROUTE_INFO:
        return RouteInfoRecord(bytes(body))
    if record_type == RecordType.REKEY_INIT:
        _at_least(body, 4, "REKEY_INIT")
        return RekeyInitRecord(_EPOCH.unpack_from(body)[0], bytes(body[4:]))
    if record_type == RecordType.REKEY_REPLY:
        _at_least(body, 4, "REKEY_REPLY")
        return RekeyReplyRecord(_EPOCH.unpack_from(body)[0], bytes(body[4:]))
    if record_type == RecordType.REKEY_SWITCH:
        _exact(body, 4, "REKEY_SWITCH")
        return RekeySwitchRecord(_EPOCH.unpack(body)[0])
    if record_type == RecordType.CLOSE:
        return CloseRecord(_text(body, "CLOSE reason"))
    if record_type == RecordType.RELAY_OPEN:
        _exact(body, _RELAY_OPEN.size, "RELAY_OPEN")
        stream_id, destination, port, hops_left = _RELAY_OPEN.unpack(body)
        return RelayOpenRecord(
            _nonzero_stream(stream_id, "RELAY_OPEN"),
            ipaddress.IPv6Address(destination),
            port,
            hops_left,
        )
    raise UnknownRecordType(f"unknown record type 0x{record_type:02x}")


def decode_all(plaintext: bytes) -> list[Record]:
    """Every record of a plaintext (used by tests and the fuzz target)."""
    return [decode_record(t, body) for t, body, _ in parse_records(plaintext)]
