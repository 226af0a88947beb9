"""Every malformed input on an established link ends in a typed ProtocolError."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from altmesh.protocol import (
    BadLength,
    DecryptError,
    MalformedRecord,
    ProtocolError,
    Truncated,
    UnknownRecordType,
)
from altmesh.protocol import constants as C
from altmesh.protocol import records as R
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import inject, make_pair


def test_transport_message_shorter_than_its_mac_is_bad_length() -> None:
    pair = make_pair()
    with pytest.raises(BadLength) as caught:
        pair.responder.receive_data((5).to_bytes(2, "big") + b"12345", 0.0)
    assert caught.value.kind == "bad_length"


def test_flipped_bit_is_a_decrypt_error() -> None:
    pair = make_pair()
    pair.initiator.ping(0.0)
    message = bytearray(pair.initiator.data_to_send(pair.now))
    message[5] ^= 0x80
    with pytest.raises(DecryptError) as caught:
        pair.responder.receive_data(bytes(message), 0.0)
    assert caught.value.kind == "decrypt_failed"


def test_replayed_transport_message_is_a_decrypt_error() -> None:
    pair = make_pair()
    pair.initiator.ping(0.0)
    message = pair.initiator.data_to_send(pair.now)
    pair.responder.receive_data(message, 0.0)
    with pytest.raises(DecryptError):
        pair.responder.receive_data(message, 0.0)


def test_unknown_record_type_is_refused() -> None:
    pair = make_pair()
    with pytest.raises(UnknownRecordType) as caught:
        pair.responder.receive_data(inject(pair.initiator, b"\x7f\x00\x00"), 0.0)
    assert caught.value.kind == "unknown_record_type"


def test_record_overrunning_its_message_is_truncated() -> None:
    pair = make_pair()
    with pytest.raises(Truncated):
        pair.responder.receive_data(inject(pair.initiator, b"\x02\x00\x10abc"), 0.0)


def test_cut_record_header_is_truncated() -> None:
    pair = make_pair()
    with pytest.raises(Truncated):
        pair.responder.receive_data(inject(pair.initiator, b"\x06\x00"), 0.0)


@pytest.mark.parametrize(
    "body",
    [
        b"\x01\x00\x03abc",  # OPEN too short
        b"\x03\x00\x02ab",  # FIN too short
        b"\x04\x00\x03abc",  # RESET without code
        b"\x04\x00\x07\x00\x00\x00\x01\x00\x01\xff",  # RESET reason not UTF-8
        b"\x05\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00",  # WINDOW of zero
        b"\x06\x00\x07abcdefg",  # PING of 7 bytes
        b"\x07\x00\x09abcdefghi",  # PONG of 9 bytes
        b"\x0b\x00\x05\x00\x00\x00\x01\x00",  # REKEY_SWITCH too long
        b"\x02\x00\x04\x00\x00\x00\x00",  # DATA for stream 0
        b"\x0c\x00\x02\xc3\x28",  # CLOSE reason not UTF-8
        b"\x0d\x00\x16" + b"\x00\x00\x00\x01" + bytes(18),  # RELAY_OPEN without hops_left
        b"\x0d\x00\x18" + b"\x00\x00\x00\x01" + bytes(20),  # RELAY_OPEN one byte too long
        b"\x0d\x00\x17" + bytes(23),  # RELAY_OPEN for stream 0
    ],
)
def test_record_with_a_malformed_body_is_refused(body: bytes) -> None:
    pair = make_pair()
    with pytest.raises(MalformedRecord) as caught:
        pair.responder.receive_data(inject(pair.initiator, body), 0.0)
    assert caught.value.kind == "malformed_record"


def test_key_switch_record_not_last_in_its_message_is_malformed() -> None:
    pair = make_pair()
    switch = R.encode(R.RekeySwitchRecord(1)) + R.encode(R.PingRecord(b"12345678"))
    with pytest.raises(MalformedRecord):
        pair.responder.receive_data(inject(pair.initiator, switch), 0.0)


def test_bytes_split_anywhere_are_reassembled() -> None:
    pair = make_pair()
    pair.initiator.ping(0.0)
    pair.initiator.send_route_info(b"r" * 5000)
    wire = pair.initiator.data_to_send(pair.now)
    for byte in wire:
        pair.responder.receive_data(bytes([byte]), 0.0)
    events = pair.take("r")
    assert len(events) == 1 and pair.responder.data_to_send(pair.now)  # route info in; pong out


RECORDS = st.one_of(
    st.builds(
        R.OpenRecord,
        st.integers(1, C.MAX_STREAM_ID),
        st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
        st.integers(0, 65535),
    ),
    st.builds(R.DataRecord, st.integers(1, C.MAX_STREAM_ID), st.binary(max_size=2000)),
    st.builds(R.FinRecord, st.integers(1, C.MAX_STREAM_ID)),
    st.builds(
        R.ResetRecord,
        st.integers(1, C.MAX_STREAM_ID),
        st.integers(0, 65535),
        st.text(max_size=100),
    ),
    st.builds(R.WindowRecord, st.integers(1, C.MAX_STREAM_ID), st.integers(1, 2**32 - 1)),
    st.builds(R.PingRecord, st.binary(min_size=8, max_size=8)),
    st.builds(R.PongRecord, st.binary(min_size=8, max_size=8)),
    st.builds(R.RouteInfoRecord, st.binary(max_size=500)),
    st.builds(R.RekeyInitRecord, st.integers(0, 2**32 - 1), st.binary(max_size=200)),
    st.builds(R.RekeyReplyRecord, st.integers(0, 2**32 - 1), st.binary(max_size=200)),
    st.builds(R.RekeySwitchRecord, st.integers(0, 2**32 - 1)),
    st.builds(R.CloseRecord, st.text(max_size=100)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORDS, max_size=10))
def test_records_round_trip(records: list[R.Record]) -> None:
    plaintext = b"".join(R.encode(r) for r in records)
    assert R.decode_all(plaintext) == records


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_record_parser_raises_only_protocol_errors(plaintext: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        R.decode_all(plaintext)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_established_link_raises_only_protocol_errors_on_any_plaintext(plaintext: bytes) -> None:
    pair = make_pair()
    with contextlib.suppress(ProtocolError):
        pair.responder.receive_data(inject(pair.initiator, plaintext), 0.0)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_handshake_parser_raises_only_protocol_errors_on_any_bytes(data: bytes) -> None:
    pair = make_pair(establish=False)
    with contextlib.suppress(ProtocolError):
        pair.responder.receive_data(data, 0.0)
    with contextlib.suppress(ProtocolError):
        pair.initiator.receive_data(data, 0.0)
