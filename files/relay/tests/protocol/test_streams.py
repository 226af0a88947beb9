"""Streams inside a link: open, data, FIN, reset, credit-based flow control, control records."""

from __future__ import annotations

import pytest
from altmesh.protocol import (
    FlowControlError,
    InvalidArgument,
    LinkNotEstablished,
    LocalStateError,
    StreamLimitReached,
    StreamStateError,
)
from altmesh.protocol import constants as C
from altmesh.protocol import events as ev
from altmesh.protocol import records as R
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import config, destination, inject, make_pair, stream_bytes


def test_stream_open_data_and_fin_in_both_directions() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 443)
    assert pair.initiator.send_stream_data(stream, b"hello") == 5
    pair.initiator.end_stream(stream)
    pair.pump()
    events = pair.take("r")
    assert events[0] == ev.StreamOpened(stream, destination(pair), 443)
    assert stream_bytes(events, stream) == b"hello"
    assert events[-1] == ev.StreamEnded(stream)
    assert pair.responder.send_stream_data(stream, b"world") == 5
    pair.responder.end_stream(stream)
    pair.pump()
    back = pair.take("i")
    assert stream_bytes(back, stream) == b"world" and back[-1] == ev.StreamEnded(stream)
    assert pair.initiator.stats.streams_open == pair.responder.stats.streams_open == 0


def test_initiator_and_responder_stream_ids_never_collide() -> None:
    pair = make_pair()
    ours = [pair.initiator.open_stream(destination(pair), 1) for _ in range(3)]
    theirs = [pair.responder.open_stream(destination(pair), 1) for _ in range(3)]
    assert ours == [1, 3, 5] and theirs == [2, 4, 6]
    pair.pump()
    opened = [e.stream_id for e in pair.take("r") if isinstance(e, ev.StreamOpened)]
    assert opened == ours


def test_reset_reaches_the_peer_with_code_and_reason() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 80)
    pair.pump()
    pair.take("r")
    pair.responder.reset_stream(stream, 0x101, "no route")
    pair.pump()
    assert pair.take("i") == [ev.StreamReset(stream, 0x101, "no route")]
    assert pair.initiator.stream_send_capacity(stream) == 0
    assert pair.initiator.send_stream_data(stream, b"late") == 0  # races with RESET are fine


def test_sender_stops_at_the_stream_window_and_resumes_on_credit() -> None:
    window = 64 * 1024
    pair = make_pair(
        initiator_config=config(stream_window=window), responder_config=config(stream_window=window)
    )
    stream = pair.initiator.open_stream(destination(pair), 80)
    payload = bytes(range(256)) * 1024  # 256 KiB
    sent = pair.initiator.send_stream_data(stream, payload)
    assert sent == window
    assert pair.initiator.stream_send_capacity(stream) == 0
    assert pair.initiator.send_stream_data(stream, payload[sent:]) == 0
    pair.pump()
    received = stream_bytes(pair.take("r"), stream)
    assert received == payload[:window]
    pair.responder.acknowledge(stream, window // 8)  # below the update threshold: no credit yet
    pair.pump()
    assert pair.take("i") == []
    pair.responder.acknowledge(stream, window)
    pair.pump()
    assert pair.take("i") == [ev.StreamWritable(stream)]
    assert pair.initiator.stream_send_capacity(stream) == window


def test_a_stalled_stream_does_not_block_another() -> None:
    window = 32 * 1024
    pair = make_pair(
        initiator_config=config(stream_window=window), responder_config=config(stream_window=window)
    )
    slow = pair.initiator.open_stream(destination(pair), 1)
    fast = pair.initiator.open_stream(destination(pair), 2)
    assert pair.initiator.send_stream_data(slow, b"s" * 100_000) == window  # never acknowledged
    total = 0
    for _ in range(20):
        accepted = pair.initiator.send_stream_data(fast, b"f" * window)
        assert accepted == window
        pair.pump()
        data = stream_bytes(pair.take("r"), fast)
        total += len(data)
        pair.responder.acknowledge(fast, len(data))
        pair.pump()
        pair.take("i")
    assert total == 20 * window
    assert pair.initiator.stream_send_capacity(slow) == 0


def test_receiver_memory_is_bounded_by_the_windows() -> None:
    """However much the application offers, unacknowledged bytes never exceed the window."""
    window = 16 * 1024
    pair = make_pair(
        initiator_config=config(stream_window=window), responder_config=config(stream_window=window)
    )
    stream = pair.initiator.open_stream(destination(pair), 1)
    for _ in range(50):
        pair.initiator.send_stream_data(stream, b"x" * 100_000)
        pair.pump()
    assert len(stream_bytes(pair.take("r"), stream)) == window


def test_peer_overrunning_a_window_gets_its_stream_reset_and_a_security_notice() -> None:
    window = 1024
    pair = make_pair(responder_config=config(stream_window=window))
    stream = pair.initiator.open_stream(destination(pair), 1)
    other = pair.initiator.open_stream(destination(pair), 2)
    pair.pump()
    pair.take("r")
    cheat = R.encode(R.DataRecord(stream, b"z" * (window + 1)))
    pair.responder.receive_data(inject(pair.initiator, cheat), 0.0)
    events = pair.take("r")
    assert ev.SecurityNotice in {type(e) for e in events}
    reset = [e for e in events if isinstance(e, ev.StreamReset)]
    assert reset and reset[0].stream_id == stream and reset[0].code == C.RESET_FLOW_CONTROL
    assert not any(isinstance(e, ev.StreamData) for e in events)
    pair.transfer("r")  # the violator is told: RESET with the flow-control code
    assert ev.StreamReset(stream, C.RESET_FLOW_CONTROL, "flow control violated") in pair.take("i")
    assert pair.initiator.send_stream_data(other, b"still fine") == 10  # the link lives on
    pair.pump()
    assert stream_bytes(pair.take("r"), other) == b"still fine"


def test_peer_opening_more_streams_than_allowed_is_a_flow_control_error() -> None:
    limited = config(max_streams=2)
    pair = make_pair(responder_config=limited)
    opens = b"".join(R.encode(R.OpenRecord(n, destination(pair), 1)) for n in (1, 3, 5))
    with pytest.raises(FlowControlError) as caught:
        pair.responder.receive_data(inject(pair.initiator, opens), 0.0)
    assert caught.value.kind == "flow_control"


def test_our_side_respects_the_peers_stream_limit() -> None:
    pair = make_pair(responder_config=config(max_streams=2))
    pair.initiator.open_stream(destination(pair), 1)
    second = pair.initiator.open_stream(destination(pair), 1)
    with pytest.raises(StreamLimitReached):
        pair.initiator.open_stream(destination(pair), 1)
    pair.initiator.reset_stream(second, 1, "done")
    pair.initiator.open_stream(destination(pair), 1)  # a slot is free again


def test_excess_credit_is_a_flow_control_error() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 1)
    pair.pump()
    grant = R.encode(R.WindowRecord(stream, C.MAX_STREAM_WINDOW))
    with pytest.raises(FlowControlError):
        pair.initiator.receive_data(inject(pair.responder, grant), 0.0)


def test_data_on_a_never_opened_stream_is_a_stream_state_error() -> None:
    pair = make_pair()
    with pytest.raises(StreamStateError) as caught:
        pair.responder.receive_data(inject(pair.initiator, R.encode(R.DataRecord(7, b"x"))), 0.0)
    assert caught.value.kind == "stream_state"


def test_open_with_our_parity_or_a_reused_id_is_a_stream_state_error() -> None:
    pair = make_pair()
    with pytest.raises(StreamStateError):
        pair.responder.receive_data(
            inject(pair.initiator, R.encode(R.OpenRecord(2, destination(pair), 1))), 0.0
        )
    pair = make_pair()
    twice = R.encode(R.OpenRecord(3, destination(pair), 1)) * 2
    with pytest.raises(StreamStateError):
        pair.responder.receive_data(inject(pair.initiator, twice), 0.0)


def test_data_after_fin_is_a_stream_state_error() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 1)
    pair.initiator.end_stream(stream)
    pair.pump()
    with pytest.raises(StreamStateError):
        pair.responder.receive_data(
            inject(pair.initiator, R.encode(R.DataRecord(stream, b"x"))), 0.0
        )


def test_local_misuse_raises_clear_errors() -> None:
    pair = make_pair()
    with pytest.raises(LocalStateError, match="never opened"):
        pair.initiator.send_stream_data(99, b"x")
    stream = pair.initiator.open_stream(destination(pair), 1)
    pair.initiator.end_stream(stream)
    with pytest.raises(LocalStateError, match="after end_stream"):
        pair.initiator.send_stream_data(stream, b"x")
    unopened = make_pair(establish=False)
    with pytest.raises(LinkNotEstablished):
        unopened.initiator.open_stream(destination(pair), 1)


def test_records_in_flight_after_our_reset_are_ignored() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 1)
    pair.pump()
    pair.take("r")
    assert pair.responder.send_stream_data(stream, b"in flight") == 9
    in_flight = pair.responder.data_to_send(pair.now)
    pair.initiator.reset_stream(stream, 5, "changed my mind")
    pair.initiator.receive_data(in_flight, 0.0)
    assert pair.take("i") == []


def test_ping_gives_the_round_trip_time() -> None:
    pair = make_pair()
    pair.initiator.ping(pair.now)
    pair.transfer("i")
    pair.now += 0.25
    pair.transfer("r")
    assert pair.take("i") == [ev.PongReceived(0.25)]
    assert pair.initiator.stats.last_rtt == 0.25


def test_route_info_is_delivered_opaque() -> None:
    pair = make_pair()
    pair.responder.send_route_info(b"\x00mesh\xff")
    pair.pump()
    assert pair.take("i") == [ev.RouteInfoReceived(b"\x00mesh\xff")]


def test_close_tells_the_peer_and_ends_the_link() -> None:
    pair = make_pair()
    pair.initiator.close("shutting down", pair.now)
    pair.pump()
    assert pair.take("r") == [ev.LinkClosed("shutting down")]
    assert not pair.initiator.established and not pair.responder.established
    with pytest.raises(LinkNotEstablished):
        pair.initiator.open_stream(destination(pair), 1)


def test_keepalive_is_sent_when_idle_and_a_silent_peer_times_out() -> None:
    pair = make_pair(initiator_config=config(keepalive_interval=5.0, idle_timeout=12.0))
    pair.now = 5.0
    pair.initiator.handle_timer(pair.now)
    keepalive = pair.initiator.data_to_send(pair.now)
    assert len(keepalive) == 2 + C.TAG_LEN  # an empty transport message
    from altmesh.protocol import PeerTimeout

    with pytest.raises(PeerTimeout):
        pair.initiator.handle_timer(12.0)


def frames(wire: bytes) -> list[int]:
    sizes, offset = [], 0
    while offset < len(wire):
        size = int.from_bytes(wire[offset : offset + 2], "big")
        sizes.append(size)
        offset += 2 + size
    assert offset == len(wire)
    return sizes


def test_large_writes_are_split_into_messages_of_at_most_65535_bytes() -> None:
    window = 1024 * 1024
    pair = make_pair(responder_config=config(stream_window=window))
    stream = pair.initiator.open_stream(destination(pair), 1)
    assert pair.initiator.send_stream_data(stream, bytes(window)) == window
    sizes = frames(pair.initiator.data_to_send(pair.now))
    assert max(sizes) == C.MAX_MESSAGE_LEN  # full messages: 65519 plaintext + 16 tag
    assert sum(sizes) - 16 * len(sizes) >= window


FLOW_ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["send", "deliver", "ack", "ack_all"]),
        st.integers(0, 3),  # stream index
        st.integers(1, 40_000),
    ),
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(FLOW_ACTIONS)
def test_unacknowledged_bytes_never_exceed_the_window_and_credit_always_returns(
    actions: list[tuple[str, int, int]],
) -> None:
    """Whatever the sender offers and whenever the receiver consumes: per stream, data held
    unacknowledged by the receiver stays within the window, and once everything is consumed
    the sender gets its credit back (up to the last, batched quarter window)."""
    window = 8 * 1024
    cfg = config(stream_window=window)
    pair = make_pair(initiator_config=cfg, responder_config=cfg)
    streams = [pair.initiator.open_stream(destination(pair), n) for n in range(4)]
    held = dict.fromkeys(streams, 0)
    for action, index, amount in actions:
        stream = streams[index]
        if action == "send":
            pair.initiator.send_stream_data(stream, b"d" * amount)
        elif action == "deliver":
            pair.pump()
            for event in pair.take("r"):
                if isinstance(event, ev.StreamData):
                    held[event.stream_id] += len(event.data)
            pair.take("i")
        elif action == "ack":
            count = min(amount, held[stream])
            pair.responder.acknowledge(stream, count)
            held[stream] -= count
        else:
            for s in streams:
                pair.responder.acknowledge(s, held[s])
                held[s] = 0
        assert all(0 <= h <= window for h in held.values())
    pair.pump()
    for event in pair.take("r"):
        if isinstance(event, ev.StreamData):
            held[event.stream_id] += len(event.data)
    assert all(h <= window for h in held.values())
    for s in streams:
        pair.responder.acknowledge(s, held[s])
    pair.pump()
    # Credit returns in batches of at least a quarter window: never less than 3/4 is left idle.
    assert all(pair.initiator.stream_send_capacity(s) > window - window // 4 for s in streams)


def test_route_info_larger_than_one_message_is_refused_locally() -> None:
    pair = make_pair()
    pair.responder.send_route_info(b"r" * C.MAX_ROUTE_INFO_LEN)  # the largest that fits
    with pytest.raises(InvalidArgument, match="at most"):
        pair.responder.send_route_info(b"r" * (C.MAX_ROUTE_INFO_LEN + 1))
    pair.pump()
    (event,) = pair.take("i")
    assert isinstance(event, ev.RouteInfoReceived) and len(event.payload) == C.MAX_ROUTE_INFO_LEN


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"network": ""}, "network name"),
        ({"rekey_after_time": 200.0}, "rekey_after_time < reject_after_time"),
        ({"rekey_after_messages": 0}, "rekey_after_messages"),
        ({"stream_window": 0}, "stream_window"),
        ({"max_streams": 0}, "max_streams"),
        ({"idle_timeout": 1.0}, "idle_timeout"),
        ({"link_window": 1024}, "link_window"),
    ],
)
def test_link_config_refuses_inconsistent_settings(
    overrides: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        config(**overrides)


def test_ping_flood_gets_a_bounded_number_of_answers_and_a_notice() -> None:
    pair = make_pair()
    # 150 PINGs in one message: within the PING limit (protocol/limits.py), beyond the answers.
    flood = b"".join(R.encode(R.PingRecord(n.to_bytes(8, "big"))) for n in range(150))
    pair.responder.receive_data(inject(pair.initiator, flood), 0.0)
    assert ev.SecurityNotice("ping_flood", "PINGs faster than we send") in pair.take("r")
    answers = pair.responder.data_to_send(pair.now)
    assert len(answers) < 16 * 11 + 2 + 16 + 1  # at most 16 PONG records in one message
    pair.initiator.receive_data(answers, 0.0)
    notices = [e for e in pair.take("i") if isinstance(e, ev.SecurityNotice)]
    assert len(notices) == 16  # unsolicited: the initiator never sent those PINGs
