"""The stream table of one link on its own: ids and parity, limits, credit, acknowledgement and
past streams, without a link around it."""

from __future__ import annotations

import pytest
from altmesh.protocol import (
    FlowControlError,
    InvalidArgument,
    LocalStateError,
    StreamLimitReached,
    StreamStateError,
)
from altmesh.protocol import constants as C
from altmesh.protocol.link_config import LinkStats
from altmesh.protocol.streams import StreamTable

WINDOW = 1000


def table(
    *, is_initiator: bool = True, peer_may_open: int = 4, we_may_open: int = 4
) -> tuple[StreamTable, LinkStats]:
    stats = LinkStats()
    streams = StreamTable(
        is_initiator=is_initiator,
        stream_window=WINDOW,
        peer_may_open=peer_may_open,
        we_may_open=we_may_open,
        stats=stats,
    )
    streams.set_peer_limits(stream_window=500, max_streams=3)
    return streams, stats


def test_local_ids_have_the_sides_parity_and_increase() -> None:
    initiator, _ = table(is_initiator=True)
    responder, _ = table(is_initiator=False)
    assert [initiator.open_local().stream_id for _ in range(3)] == [1, 3, 5]
    assert [responder.open_local().stream_id for _ in range(3)] == [2, 4, 6]


def test_a_new_stream_starts_with_the_peers_window_to_send_and_ours_to_receive() -> None:
    streams, stats = table()
    stream = streams.open_local()
    assert (stream.send_credit, stream.receive_credit) == (500, WINDOW)
    assert (stats.streams_open, stats.streams_total) == (1, 1)


def test_the_peers_open_must_have_its_parity_and_increase() -> None:
    streams, _ = table(is_initiator=True)
    with pytest.raises(StreamStateError, match="our parity"):
        streams.open_remote(3)
    streams.open_remote(4)
    with pytest.raises(StreamStateError, match="not above"):
        streams.open_remote(4)
    with pytest.raises(StreamStateError, match="not above"):
        streams.open_remote(2)


def test_the_peer_may_hold_open_only_the_streams_we_advertise() -> None:
    streams, _ = table(peer_may_open=2)
    streams.open_remote(2)
    streams.open_remote(4)
    with pytest.raises(FlowControlError):
        streams.open_remote(6)
    streams.forget(2)
    streams.open_remote(8)  # a finished stream frees its slot


def test_we_open_at_most_the_smaller_of_the_peers_limit_and_our_own() -> None:
    streams, _ = table(we_may_open=2)  # the peer allows 3
    first = streams.open_local()
    streams.open_local()
    with pytest.raises(StreamLimitReached):
        streams.open_local()
    streams.forget(first.stream_id)
    assert streams.open_local().stream_id == 5


def test_stream_ids_run_out_as_a_local_limit() -> None:
    streams, _ = table()
    streams._next_local_id = C.MAX_STREAM_ID + 2  # the last odd id was used
    with pytest.raises(StreamLimitReached, match="exhausted"):
        streams.open_local()


def test_past_streams_are_told_apart_from_ids_never_opened() -> None:
    streams, _ = table(is_initiator=True)
    ours = streams.open_local()
    streams.open_remote(6)
    streams.forget(ours.stream_id)
    streams.forget(6)
    assert streams.is_past(ours.stream_id) and streams.is_past(2) and streams.is_past(6)
    assert not streams.is_past(3) and not streams.is_past(8) and not streams.is_past(0)
    # A record for a past stream is ignored; for an id never opened it is the peer's fault,
    # and a call naming one is the application's mistake.
    assert streams.for_peer_record(6, "DATA") is None
    with pytest.raises(StreamStateError, match="never opened"):
        streams.for_peer_record(8, "DATA")
    assert streams.for_local_call(ours.stream_id) is None
    with pytest.raises(LocalStateError, match="never opened"):
        streams.for_local_call(3)


def test_send_credit_is_used_up_and_the_app_is_told_when_more_comes() -> None:
    streams, _ = table()
    stream = streams.open_local()
    assert stream.take_send_credit(800) == 500
    assert stream.take_send_credit(10) == 0
    assert stream.add_send_credit(100) is True  # the app waits for credit: StreamWritable
    assert stream.add_send_credit(100) is False  # and is told once
    assert stream.take_send_credit(150) == 150


def test_credit_above_any_window_is_the_peers_fault() -> None:
    streams, _ = table()
    stream = streams.open_local()
    with pytest.raises(FlowControlError):
        stream.add_send_credit(C.MAX_STREAM_WINDOW)


def test_data_beyond_the_credit_given_is_an_overrun_and_changes_nothing() -> None:
    streams, _ = table()
    stream = streams.open_remote(2)
    assert stream.receive(WINDOW - 1)
    assert not stream.receive(2)
    assert (stream.received, stream.receive_credit) == (WINDOW - 1, 1)


def test_acknowledged_bytes_return_as_credit_in_quarter_window_batches() -> None:
    streams, _ = table()
    stream = streams.open_remote(2)
    stream.receive(WINDOW)
    step = WINDOW // C.WINDOW_UPDATE_FRACTION
    assert streams.acknowledge(2, step - 1) == 0  # not yet worth a WINDOW record
    assert streams.acknowledge(2, 1) == step
    assert streams.acknowledge(2, 10 * WINDOW) == WINDOW - step  # never more than received
    assert stream.receive_credit == WINDOW
    assert streams.acknowledge(2, 1) == 0


def test_after_the_peers_fin_no_credit_is_returned() -> None:
    streams, _ = table()
    stream = streams.open_remote(2)
    stream.receive(WINDOW)
    stream.receive_fin()
    assert streams.acknowledge(2, WINDOW) == 0
    with pytest.raises(StreamStateError, match="second FIN"):
        stream.receive_fin()
    with pytest.raises(StreamStateError, match="after FIN"):
        stream.receive(1)


def test_data_after_our_own_fin_is_the_applications_mistake() -> None:
    streams, _ = table()
    stream = streams.open_local()
    stream.local_fin = True
    with pytest.raises(LocalStateError, match="after end_stream"):
        stream.take_send_credit(1)


def test_negative_acknowledgement_is_a_bad_argument() -> None:
    streams, _ = table()
    with pytest.raises(InvalidArgument):
        streams.acknowledge(1, -1)
    assert streams.acknowledge(99, 5) == 0  # unknown or finished streams need no credit


def test_forgetting_streams_keeps_the_counters_true() -> None:
    streams, stats = table()
    ours, theirs = streams.open_local(), streams.open_remote(2)
    streams.forget(ours.stream_id)
    streams.forget(theirs.stream_id)
    assert (len(streams), stats.streams_open, stats.streams_total) == (0, 0, 2)
