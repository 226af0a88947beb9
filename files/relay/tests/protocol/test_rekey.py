"""Rekeying inside a live link: make-before-break, both sides, both at once, under load."""

from __future__ import annotations

import pytest
from altmesh.protocol import ControlLimits, LinkConnection, RecordLimit, RekeyError, SessionExpired
from altmesh.protocol import events as ev
from altmesh.protocol import records as R
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_statistic
from hypothesis import strategies as st

from .helpers import Pair, config, destination, inject, make_pair


def pattern(side: str, start: int, size: int) -> bytes:
    """Bytes start..start+size of a side's endless, position-dependent payload."""
    seed = sum(side.encode()) & 0xFF
    return bytes(((n * 31) ^ seed ^ (n >> 8)) & 0xFF for n in range(start, start + size))


class Traffic:
    """Both sides write one stream's data; checks what arrives is exactly what was sent."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.stream = pair.initiator.open_stream(destination(pair), 9)
        self.sent = {"i": 0, "r": 0}
        self.received = {"i": bytearray(), "r": bytearray()}
        self.rekeyed = {"i": 0, "r": 0}
        pair.pump()
        self.absorb()

    def send(self, side: str, size: int) -> None:
        conn = self.pair.side(side)
        accepted = conn.send_stream_data(self.stream, pattern(side, self.sent[side], size))
        self.sent[side] += accepted

    def absorb(self) -> None:
        for side in ("i", "r"):
            for event in self.pair.take(side):
                if isinstance(event, ev.StreamData):
                    self.received[side] += event.data
                    self.pair.side(side).acknowledge(self.stream, len(event.data))
                elif isinstance(event, ev.Rekeyed):
                    self.rekeyed[side] += 1

    def check(self) -> None:
        for side, other in (("i", "r"), ("r", "i")):
            got = bytes(self.received[other])
            assert got == pattern(side, 0, len(got)), f"{side}->{other} lost/duplicated/reordered"

    def settle(self) -> None:
        for _ in range(50):
            self.pair.pump()
            self.absorb()
            if not self.pair.initiator.data_to_send(
                self.pair.now
            ) and not self.pair.responder.data_to_send(self.pair.now):
                break
        self.pair.pump()
        self.absorb()
        self.check()
        for side, other in (("i", "r"), ("r", "i")):
            assert len(self.received[other]) == self.sent[side]


@pytest.mark.parametrize("who", ["i", "r"])
def test_rekey_from_either_side_mid_stream_keeps_every_byte(who: str) -> None:
    pair = make_pair()
    traffic = Traffic(pair)
    traffic.send("i", 50_000)
    traffic.send("r", 50_000)
    pair.side(who).rekey(pair.now)
    traffic.send("i", 30_000)  # queued under the old key, before the switch
    pair.transfer(who)
    traffic.send("r", 30_000)
    traffic.settle()
    assert traffic.rekeyed == {"i": 1, "r": 1}
    assert pair.initiator.stats.key_epoch == pair.responder.stats.key_epoch == 1
    events_before = pair.side(who).stats.rekeys
    assert events_before == 1


def test_simultaneous_rekey_resolves_to_one_new_session() -> None:
    pair = make_pair()
    traffic = Traffic(pair)
    traffic.send("i", 20_000)
    traffic.send("r", 20_000)
    pair.initiator.rekey(pair.now)
    pair.responder.rekey(pair.now)
    in_flight_i = pair.initiator.data_to_send(pair.now)
    in_flight_r = pair.responder.data_to_send(pair.now)
    pair.responder.receive_data(in_flight_i, pair.now)  # both REKEY_INITs cross on the wire
    pair.initiator.receive_data(in_flight_r, pair.now)
    pair.pump()
    rekeyed_i = [e for e in pair.events["i"] if isinstance(e, ev.Rekeyed)]
    rekeyed_r = [e for e in pair.events["r"] if isinstance(e, ev.Rekeyed)]
    assert rekeyed_i == [ev.Rekeyed(initiated_by_us=True)]  # the link initiator's rekey won
    assert rekeyed_r == [ev.Rekeyed(initiated_by_us=False)]
    traffic.send("i", 20_000)
    traffic.send("r", 20_000)
    traffic.settle()
    assert traffic.rekeyed == {"i": 1, "r": 1}
    assert pair.initiator.stats.key_epoch == pair.responder.stats.key_epoch == 1
    # The link initiator's rekey won: it reports the rekey as its own.
    assert pair.initiator.stats.rekeys == pair.responder.stats.rekeys == 1


def test_rekey_by_time_through_the_timers() -> None:
    pair = make_pair(
        initiator_config=config(rekey_after_time=10.0, reject_after_time=15.0),
        responder_config=config(rekey_after_time=10.0, reject_after_time=15.0),
    )
    traffic = Traffic(pair)
    for _ in range(5):
        deadline = min(pair.initiator.next_timer_deadline() or 1e9, 10.0 + pair.now)
        pair.tick(deadline - pair.now)
        traffic.send("i", 5_000)
        traffic.send("r", 5_000)
        traffic.settle()
    assert traffic.rekeyed["i"] >= 2 and traffic.rekeyed["r"] >= 2
    assert pair.initiator.established and pair.responder.established


def test_rekey_by_message_count() -> None:
    small = config(rekey_after_messages=8, reject_after_messages=1000)
    pair = make_pair(initiator_config=small, responder_config=small)
    traffic = Traffic(pair)
    for _ in range(40):
        traffic.send("i", 3_000)
        pair.transfer("i")
        traffic.absorb()
        pair.transfer("r")
        traffic.absorb()
    traffic.settle()
    assert traffic.rekeyed["i"] >= 3
    assert pair.initiator.stats.key_epoch >= 3


def test_session_older_than_reject_after_time_is_never_used() -> None:
    cfg = config(rekey_after_time=10.0, reject_after_time=15.0, keepalive_interval=100.0)
    pair = make_pair(initiator_config=cfg, responder_config=cfg)
    stream = pair.initiator.open_stream(destination(pair), 1)
    pair.pump()
    pair.tick(10.0)  # both start a rekey; the peer never gets the REKEY_INIT
    pair.initiator.data_to_send(pair.now)
    pair.responder.data_to_send(pair.now)
    assert pair.initiator.next_timer_deadline() == 15.0
    pair.now = 15.5
    pair.initiator.send_stream_data(stream, b"must never leave under the old key")
    assert pair.initiator.data_to_send(pair.now) == b""
    with pytest.raises(SessionExpired) as caught:
        pair.initiator.handle_timer(pair.now)
    assert caught.value.kind == "session_expired"


def test_peer_still_using_an_expired_session_is_refused() -> None:
    cfg = config(rekey_after_time=10.0, reject_after_time=15.0, keepalive_interval=100.0)
    pair = make_pair(initiator_config=cfg, responder_config=cfg)
    stale = inject(pair.responder, R.encode(R.PingRecord(b"12345678")))
    with pytest.raises(SessionExpired):
        pair.initiator.receive_data(stale, 16.0)


def test_rekey_switch_out_of_sequence_is_a_rekey_error() -> None:
    pair = make_pair()
    with pytest.raises(RekeyError) as caught:
        pair.responder.receive_data(inject(pair.initiator, R.encode(R.RekeySwitchRecord(1))), 0.0)
    assert caught.value.kind == "rekey_failed"


def test_rekey_init_for_a_wrong_epoch_is_a_rekey_error() -> None:
    pair = make_pair()
    with pytest.raises(RekeyError):
        pair.responder.receive_data(
            inject(pair.initiator, R.encode(R.RekeyInitRecord(7, b"\x00" * 134))), 0.0
        )


def test_rekey_init_with_garbage_handshake_is_a_rekey_error() -> None:
    pair = make_pair()
    with pytest.raises(RekeyError):
        pair.responder.receive_data(
            inject(pair.initiator, R.encode(R.RekeyInitRecord(1, b"\x07" * 134))), 0.0
        )


# ------------------------------------------------------------------ property test

ACTIONS = st.one_of(
    st.tuples(st.just("send"), st.sampled_from("ir"), st.integers(1, 150_000)),
    st.tuples(st.just("deliver"), st.sampled_from("ir"), st.integers(0, 200_000)),
    st.tuples(st.just("rekey"), st.sampled_from(["i", "r", "both"]), st.just(0)),
    st.tuples(st.just("deliver"), st.sampled_from("ir"), st.integers(0, 200)),
    st.tuples(st.just("tick"), st.just("i"), st.integers(1, 5_000)),
)


class Wire:
    """Bytes in flight per direction; `deliver` hands over an arbitrary prefix (TCP segments)."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.in_flight = {"i": bytearray(), "r": bytearray()}

    def collect(self, side: str) -> None:
        self.in_flight[side] += self.pair.side(side).data_to_send(self.pair.now)

    def deliver(self, side: str, size: int) -> None:
        self.collect(side)
        buffer = self.in_flight[side]
        chunk, self.in_flight[side] = bytes(buffer[:size]), buffer[size:]
        target: LinkConnection = self.pair.side(self.pair.other(side))
        target.receive_data(chunk, self.pair.now)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(ACTIONS, min_size=1, max_size=80), st.integers(2, 24))
def test_any_interleaving_of_rekeys_and_traffic_loses_nothing(
    actions: list[tuple[str, str, int]], rekey_after_messages: int
) -> None:
    """Random sends, partial deliveries, rekeys from either or both sides, time passing and
    message-count rekeys: each direction receives exactly the bytes sent, in order."""
    cfg = config(
        rekey_after_messages=rekey_after_messages,
        rekey_after_time=30.0,
        reject_after_time=1_000.0,
        keepalive_interval=20.0,
        stream_window=64 * 1024,
    )
    pair = make_pair(initiator_config=cfg, responder_config=cfg)
    traffic = Traffic(pair)
    wire = Wire(pair)
    for action, side, amount in actions:
        if action == "send":
            traffic.send(side, amount)
        elif action == "deliver":
            wire.deliver(side, amount)
        elif action == "rekey":
            for name in ("i", "r") if side == "both" else (side,):
                pair.side(name).rekey(pair.now)
        else:
            pair.now += amount / 1000.0
            for name in ("i", "r"):
                conn = pair.side(name)
                deadline = conn.next_timer_deadline()
                if deadline is not None and deadline <= pair.now:
                    conn.handle_timer(pair.now)
        traffic.absorb()
        traffic.check()
    for _ in range(100):  # drain the wire through itself, so nothing overtakes bytes in flight
        for side in ("i", "r"):
            wire.deliver(side, 1 << 30)
            traffic.absorb()
        wire.collect("i")
        wire.collect("r")
        if not wire.in_flight["i"] and not wire.in_flight["r"]:
            break
    traffic.settle()
    assert pair.initiator.stats.key_epoch == pair.responder.stats.key_epoch
    assert traffic.rekeyed["i"] == traffic.rekeyed["r"] == pair.initiator.stats.key_epoch
    note_statistic(f"epochs={min(pair.initiator.stats.key_epoch, 3)}")
    note_statistic(f"bytes>100k={len(traffic.received['r']) > 100_000}")


def test_repeated_simultaneous_rekeys_under_full_load_on_many_streams() -> None:
    """Eight streams kept at full credit in both directions while both ends start a rekey
    at the same moment, twenty times: every byte of every stream arrives once, in order."""
    window = 32 * 1024
    # Twenty rekeys at one instant: far beyond the default limit on rekeys a peer may start.
    many_rekeys = ControlLimits(rekeys=RecordLimit(rate=1.0, burst=100))
    cfg = config(stream_window=window, control_limits=many_rekeys)
    pair = make_pair(initiator_config=cfg, responder_config=cfg)
    streams = [pair.initiator.open_stream(destination(pair), n) for n in range(8)]
    sent = {(side, s): 0 for side in "ir" for s in streams}
    received = {(side, s): bytearray() for side in "ir" for s in streams}

    def fill() -> None:
        for side in "ir":
            conn = pair.side(side)
            for s in streams:
                size = conn.stream_send_capacity(s)
                if size:
                    sent[side, s] += conn.send_stream_data(
                        s, pattern(side + str(s), sent[side, s], size)
                    )

    def absorb() -> None:
        for side in "ir":
            for event in pair.take(side):
                if isinstance(event, ev.StreamData):
                    received[pair.other(side), event.stream_id] += event.data
                    pair.side(side).acknowledge(event.stream_id, len(event.data))

    pair.pump()
    absorb()
    for _ in range(20):
        fill()
        pair.initiator.rekey(pair.now)
        pair.responder.rekey(pair.now)
        fill()
        crossing_i, crossing_r = (
            pair.initiator.data_to_send(pair.now),
            pair.responder.data_to_send(pair.now),
        )
        pair.responder.receive_data(crossing_i, pair.now)
        pair.initiator.receive_data(crossing_r, pair.now)
        absorb()
        fill()
        pair.pump()
        absorb()
    pair.pump()
    absorb()
    assert pair.initiator.stats.key_epoch == pair.responder.stats.key_epoch == 20
    for (side, s), data in received.items():
        assert len(data) == sent[side, s] >= 20 * window
        assert bytes(data) == pattern(side + str(s), 0, len(data))


def test_rekey_handshake_of_the_wrong_size_is_a_rekey_error() -> None:
    pair = make_pair()
    with pytest.raises(RekeyError):
        pair.responder.receive_data(
            inject(pair.initiator, R.encode(R.RekeyInitRecord(1, b"\x00" * 40))), 0.0
        )
