"""The 2-byte length framing, one implementation for links and end-to-end sessions."""

from __future__ import annotations

import pytest
from altmesh.protocol import InvalidArgument, Oversize, TruncatedHandshake, e2e, link
from altmesh.protocol import constants as C
from altmesh.protocol.framing import FrameReader, frame, length_prefix
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import make_pair
from .test_e2e import established_sessions, sessions


def accept_any(length: int) -> None:
    pass


def read_all(reader: FrameReader, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []

    def keep(message: memoryview) -> bool:
        frames.append(bytes(message))
        return True

    for chunk in chunks:
        reader.feed(chunk, accept_any, keep)
    return frames


def test_links_and_end_to_end_sessions_use_the_one_frame_reader() -> None:
    assert link.FrameReader is FrameReader and e2e.FrameReader is FrameReader
    pair = make_pair()
    client, _ = sessions()
    assert isinstance(pair.initiator._frames, FrameReader)
    assert isinstance(client._frames, FrameReader)


def test_a_frame_is_its_length_big_endian_then_the_message() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert length_prefix(C.MAX_MESSAGE_LEN) == b"\xff\xff"
    with pytest.raises(InvalidArgument):
        length_prefix(C.MAX_MESSAGE_LEN + 1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(0, 400), max_size=12),
)
def test_frames_split_or_coalesced_anyhow_come_out_whole_and_in_order(
    messages: list[bytes], cuts: list[int]
) -> None:
    wire = b"".join(frame(m) for m in messages)
    points = sorted({min(c, len(wire)) for c in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    reader = FrameReader()
    assert read_all(reader, chunks) == messages
    assert reader.buffered == 0


def test_an_incomplete_frame_is_held_and_counted() -> None:
    reader = FrameReader()
    assert read_all(reader, [frame(b"hello")[:4]]) == []
    assert reader.buffered == 4
    assert read_all(reader, [b"llo"]) == [b"hello"]
    assert reader.buffered == 0


def test_the_length_is_checked_as_soon_as_its_two_bytes_are_in() -> None:
    seen: list[int] = []

    def refuse_long(length: int) -> None:
        seen.append(length)
        if length > 10:
            raise Oversize(f"{length} bytes")

    reader = FrameReader()
    with pytest.raises(Oversize):
        reader.feed(b"\x00\x0b", refuse_long, lambda _m: True)  # no body yet
    assert seen == [11]


def test_a_handler_that_stops_reading_drops_the_rest() -> None:
    reader = FrameReader()
    taken: list[bytes] = []

    def first_only(message: memoryview) -> bool:
        taken.append(bytes(message))
        return False

    reader.feed(frame(b"one") + frame(b"two") + b"\x00", accept_any, first_only)
    assert taken == [b"one"] and reader.buffered == 0


def test_link_and_end_to_end_refuse_a_bad_length_before_its_body() -> None:
    pair = make_pair(establish=False)
    with pytest.raises(TruncatedHandshake):
        pair.responder.receive_data(b"\x00\x05", 0.0)
    _, service = sessions()
    with pytest.raises(Oversize):
        service.receive(b"\xff\xff")


def test_end_to_end_bytes_split_anywhere_are_reassembled() -> None:
    client, service = established_sessions()
    wire = client.encrypt(b"x" * 70_000) + client.close()
    received = b""
    for offset in range(0, len(wire), 777):
        received += b"".join(service.receive(wire[offset : offset + 777]))
    assert received == b"x" * 70_000 and service.peer_closed
    service.receive_end()  # nothing partial left: a clean end
