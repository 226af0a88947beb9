"""The core's records for the mesh: RELAY_OPEN (an OPEN with a hop limit, between relays) and
the STREAM_PATH payload a relay sends in ROUTE_INFO to the node that opened a stream."""

from __future__ import annotations

import contextlib

import pytest
from altmesh.protocol import (
    InvalidArgument,
    MalformedRouteInfo,
    PathHop,
    StreamPath,
    StreamStateError,
    decode_stream_path,
    encode_stream_path,
    route_info_type,
)
from altmesh.protocol import constants as C
from altmesh.protocol import events as ev
from altmesh.protocol import records as R
from hypothesis import given
from hypothesis import strategies as st

from .helpers import destination, fixed_key, inject, make_pair


def test_relay_open_carries_the_hops_left_and_opens_a_stream_like_open() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 443, hops_left=7)
    pair.initiator.send_stream_data(stream, b"ciphertext")
    pair.transfer("i")
    assert pair.take("r") == [
        ev.StreamOpened(stream, destination(pair), 443, hops_left=7),
        ev.StreamData(stream, b"ciphertext"),
    ]
    pair.responder.send_stream_data(stream, b"back")
    pair.transfer("r")
    assert pair.take("i") == [ev.StreamData(stream, b"back")]


def test_an_open_without_a_hop_limit_is_the_plain_open_record_nodes_send() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 80)
    pair.transfer("i")
    assert pair.take("r") == [ev.StreamOpened(stream, destination(pair), 80, hops_left=None)]
    plain = R.encode(R.OpenRecord(3, destination(pair), 80))
    pair.responder.receive_data(inject(pair.initiator, plain), 0.0)
    assert pair.take("r") == [ev.StreamOpened(3, destination(pair), 80)]


def test_relay_open_layout_is_23_bytes_with_the_hop_count_last() -> None:
    record = R.RelayOpenRecord(5, destination(make_pair(establish=False)), 0x1F90, 3)
    wire = R.encode(record)
    assert wire[:3] == bytes([C.RecordType.RELAY_OPEN, 0, 23])
    assert wire[3:7] == b"\x00\x00\x00\x05"
    assert wire[23:25] == b"\x1f\x90"
    assert wire[25] == 3
    assert R.decode_all(wire) == [record]


@pytest.mark.parametrize("hops_left", [-1, 256])
def test_a_hop_count_outside_one_byte_is_a_caller_mistake(hops_left: int) -> None:
    pair = make_pair()
    with pytest.raises(InvalidArgument):
        pair.initiator.open_stream(destination(pair), 80, hops_left=hops_left)


def test_relay_open_with_an_id_of_the_receivers_parity_is_a_stream_state_fault() -> None:
    pair = make_pair()
    forged = R.encode(R.RelayOpenRecord(2, destination(pair), 80, 1))  # responder's parity
    with pytest.raises(StreamStateError):
        pair.responder.receive_data(inject(pair.initiator, forged), 0.0)


def path(*names: str, stream_id: int = 1) -> StreamPath:
    return StreamPath(
        stream_id, tuple(PathHop(fixed_key(i + 1).public, name) for i, name in enumerate(names))
    )


def test_a_stream_path_round_trips_and_starts_with_version_and_type() -> None:
    original = path("relay-a", "", "c3", stream_id=0xDEADBEEF)
    payload = encode_stream_path(original)
    assert payload[:2] == bytes([C.ROUTE_INFO_VERSION, C.RouteInfoType.STREAM_PATH])
    assert route_info_type(payload) == C.RouteInfoType.STREAM_PATH
    assert decode_stream_path(payload) == original
    assert decode_stream_path(payload).names()[0] == "relay-a"
    assert decode_stream_path(payload).names()[1] != ""  # an unnamed hop shows its key


@given(
    st.integers(1, 2**32 - 1),
    st.lists(st.from_regex(r"[a-z0-9-]{0,63}", fullmatch=True), min_size=1, max_size=255),
)
def test_every_stream_path_that_can_be_sent_decodes_to_itself(
    stream_id: int, names: list[str]
) -> None:
    original = path(*names, stream_id=stream_id)
    assert decode_stream_path(encode_stream_path(original)) == original


def valid() -> bytes:
    return encode_stream_path(path("a", "bb"))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01\x02\x00\x00",  # header cut short
        bytes([2]) + valid()[1:],  # another version
        valid()[:1] + b"\x01" + valid()[2:],  # announcements, not a path
        valid()[:2] + b"\x00\x00\x00\x00" + valid()[6:],  # stream 0
        valid()[:6] + b"\x00",  # no hops
        valid()[:-1],  # last name cut short
        valid() + b"x",  # trailing byte
        valid()[:6] + b"\x01" + bytes(32) + b"\x40" + b"a" * 64,  # name of 64 bytes
        valid()[:6] + b"\x01" + bytes(32) + b"\x01" + b"A",  # not a lowercase label
    ],
)
def test_a_malformed_stream_path_raises_only_malformed_route_info(payload: bytes) -> None:
    with pytest.raises(MalformedRouteInfo) as caught:
        decode_stream_path(payload)
    assert caught.value.kind == "route_info_malformed"


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_malformed_route_info(payload: bytes) -> None:
    with contextlib.suppress(MalformedRouteInfo):
        decode_stream_path(payload)


def test_a_payload_of_another_version_has_no_type_this_node_reads() -> None:
    assert route_info_type(b"") is None
    assert route_info_type(b"\x01") is None
    assert route_info_type(b"\x02\x01rest") is None
    assert route_info_type(b"\x01\x01rest") == C.RouteInfoType.ANNOUNCEMENTS


def test_a_path_that_cannot_be_encoded_is_a_caller_mistake() -> None:
    with pytest.raises(InvalidArgument):
        encode_stream_path(StreamPath(1, ()))
    with pytest.raises(InvalidArgument):
        encode_stream_path(StreamPath(1, (PathHop(b"short", "a"),)))
    with pytest.raises(InvalidArgument):
        encode_stream_path(path("Not_A_Label"))
