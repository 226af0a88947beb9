"""Record limits (docs/protocol.md section 9): floods of records that carry no stream data fail
the link with `control_flood`; the same records at the rates a conforming peer sends never do."""

from __future__ import annotations

import pytest
from altmesh.protocol import ControlFlood, ControlLimits, RecordLimit
from altmesh.protocol import events as ev
from altmesh.protocol import records as R
from altmesh.protocol.limits import MIN_USEFUL_WINDOW_INCREMENT

from .helpers import config, destination, inject, make_pair

DEFAULTS = ControlLimits()


def flood_of(record: R.Record, count: int) -> list[bytes]:
    """`count` copies of `record`, packed into as few plaintexts as fit."""
    encoded = R.encode(record)
    per_message = 65519 // len(encoded)
    plaintexts = []
    while count > 0:
        n = min(per_message, count)
        plaintexts.append(encoded * n)
        count -= n
    return plaintexts


def feed(pair_side: object, sender: object, plaintexts: list[bytes], now: float = 0.0) -> None:
    for plaintext in plaintexts:
        pair_side.receive_data(inject(sender, plaintext, now), now)  # type: ignore[attr-defined]


def test_a_flood_of_window_records_for_a_reset_stream_fails_the_link_with_control_flood() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 80)
    pair.pump()
    pair.responder.reset_stream(stream, 1, "gone")
    pair.pump()
    # 20 MB of WINDOW records for the stream that is gone (the reported attack).
    with pytest.raises(ControlFlood) as caught:
        feed(pair.responder, pair.initiator, flood_of(R.WindowRecord(stream, 1), 1_500_000))
    assert caught.value.kind == "control_flood"
    # The OPEN, the burst of idle records, and the one that found the bucket empty.
    assert pair.responder.stats.records_in == 1 + DEFAULTS.idle_records.burst + 1


@pytest.mark.parametrize(
    ("name", "record", "limit"),
    [
        ("ping", R.PingRecord(b"12345678"), DEFAULTS.pings),
        ("unsolicited pong", R.PongRecord(b"12345678"), DEFAULTS.unsolicited_pongs),
        ("empty data", R.DataRecord(1, b""), DEFAULTS.idle_records),
        ("tiny window", R.WindowRecord(1, 1), DEFAULTS.idle_records),
    ],
)
def test_each_kind_of_flood_fails_the_link_once_past_its_burst(
    name: str, record: R.Record, limit: RecordLimit
) -> None:
    pair = make_pair()
    pair.initiator.open_stream(destination(pair), 80)
    pair.pump()
    pair.take("r")
    feed(pair.responder, pair.initiator, flood_of(record, limit.burst))  # the burst passes
    with pytest.raises(ControlFlood):
        feed(pair.responder, pair.initiator, flood_of(record, 2))


def test_keepalives_back_to_back_are_a_flood() -> None:
    pair = make_pair()
    with pytest.raises(ControlFlood):
        for _ in range(DEFAULTS.idle_records.burst + 1):
            pair.responder.receive_data(inject(pair.initiator, b""), 0.0)


def test_streams_opened_and_reset_in_a_loop_fail_the_link_past_the_churn_limit() -> None:
    pair = make_pair()
    address = destination(pair)
    stream_id = 1
    with pytest.raises(ControlFlood):
        for _ in range(DEFAULTS.stream_churn.burst):
            churn = R.encode(R.OpenRecord(stream_id, address, 80)) + R.encode(
                R.ResetRecord(stream_id, 0, "")
            )
            pair.responder.receive_data(inject(pair.initiator, churn), 0.0)
            stream_id += 2
    assert stream_id < 2 * DEFAULTS.stream_churn.burst


def test_rekeys_started_back_to_back_by_the_peer_fail_the_link() -> None:
    pair = make_pair()
    with pytest.raises(ControlFlood):
        for _ in range(DEFAULTS.rekeys.burst + 1):
            pair.initiator.rekey(pair.now)
            pair.pump()


def test_a_conforming_peer_never_meets_the_limits_over_an_hour_of_traffic() -> None:
    """Pings every 0.5 s, a rekey every 120 s, keepalives, streams opened, used, closed and
    reset, WINDOW records for streams just reset: an hour of simulated time."""
    cfg = config(rekey_after_time=120.0)
    pair = make_pair(initiator_config=cfg, responder_config=cfg)
    address = destination(pair)
    for step in range(7200):  # 0.5 s each
        pair.tick(0.5)
        pair.initiator.ping(pair.now)
        pair.responder.ping(pair.now)
        if step % 2 == 0:  # a stream per second, one in four reset by the far end
            stream = pair.initiator.open_stream(address, 80)
            pair.initiator.send_stream_data(stream, b"x" * 2000)
            pair.pump()
            if step % 8 == 0:
                pair.responder.reset_stream(stream, 1, "refused")
                # Data and FIN cross the RESET: records for a finished stream, ignored.
                pair.initiator.send_stream_data(stream, b"y" * 100)
                pair.initiator.end_stream(stream)
                pair.pump()
            else:
                pair.initiator.end_stream(stream)
                for event in pair.take("r"):
                    if isinstance(event, ev.StreamData):
                        pair.responder.acknowledge(event.stream_id, len(event.data))
                pair.responder.end_stream(stream)
        pair.pump()
        pair.take("i")
        pair.take("r")
    assert pair.initiator.established and pair.responder.established
    assert pair.initiator.stats.rekeys >= 29


def test_window_increments_of_a_useful_size_on_live_streams_are_not_limited() -> None:
    pair = make_pair()
    stream = pair.initiator.open_stream(destination(pair), 80)
    pair.pump()
    grant = R.WindowRecord(stream, MIN_USEFUL_WINDOW_INCREMENT)
    # Far more than the idle burst, all at one instant, but each one real credit.
    count = min(DEFAULTS.idle_records.burst * 2, (2**30 - 256 * 1024) // grant.increment)
    feed(pair.initiator, pair.responder, flood_of(grant, count))
    assert pair.initiator.established
