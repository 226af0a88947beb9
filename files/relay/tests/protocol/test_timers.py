"""Link timers from explicit times: deadlines are computed from what the link recorded and every
check is given `now`, so none of this sleeps."""

from __future__ import annotations

import pytest
from altmesh.protocol import HandshakeTimeout, PeerTimeout, SessionExpired
from altmesh.protocol import events as ev
from altmesh.protocol.link_config import LinkStats
from altmesh.protocol.receive import Receiver
from altmesh.protocol.send import Sender
from altmesh.protocol.timers import LinkTimers

from .helpers import config, destination, make_pair

CFG = config(
    rekey_after_time=100.0,
    reject_after_time=150.0,
    keepalive_interval=10.0,
    idle_timeout=35.0,
    handshake_timeout=5.0,
)


def timers(
    *, sent: float = 0.0, received: float = 0.0, send_key: float = 0.0, receive_key: float = 0.0
) -> tuple[LinkTimers, Sender]:
    stats = LinkStats()
    sender, receiver = Sender(CFG, stats), Receiver(CFG, stats)
    sender.install_key(bytes(32), 0, send_key)
    receiver.install_key(bytes(32), 0, receive_key)
    sender.last_sent, receiver.last_received = sent, received
    return LinkTimers(CFG, sender, receiver), sender


def test_the_handshake_deadline_counts_from_the_start() -> None:
    link_timers, _ = timers()
    assert link_timers.handshake_deadline() is None  # not started
    link_timers.started_at = 2.0
    assert link_timers.handshake_deadline() == 7.0
    link_timers.check_handshake(6.9)
    with pytest.raises(HandshakeTimeout):
        link_timers.check_handshake(7.0)


def test_the_next_deadline_is_the_earliest_of_keepalive_idle_rekey_and_reject() -> None:
    link_timers, _ = timers(sent=50.0, received=40.0, send_key=30.0, receive_key=20.0)
    # keepalive 60, idle 75, reject 170 (older key), rekey 130 (send key)
    assert link_timers.established_deadline(rekey_running=False) == 60.0
    link_timers, _ = timers(sent=200.0, received=200.0, send_key=30.0, receive_key=20.0)
    assert link_timers.established_deadline(rekey_running=False) == 130.0
    assert link_timers.established_deadline(rekey_running=True) == 170.0  # no second rekey


def test_a_message_count_rekey_is_due_from_the_seal_that_reached_the_limit() -> None:
    link_timers, sender = timers(sent=12.5)
    sender.rekey_due = True
    assert link_timers.established_deadline(rekey_running=False) == 12.5
    assert link_timers.check_established(12.5, rekey_running=False).start_rekey
    assert not link_timers.check_established(12.5, rekey_running=True).start_rekey


def test_keepalive_rekey_and_the_fatal_timeouts_at_their_times() -> None:
    link_timers, _ = timers()
    work = link_timers.check_established(9.9, rekey_running=False)
    assert not work.keepalive and not work.start_rekey
    assert link_timers.check_established(10.0, rekey_running=False).keepalive
    with pytest.raises(PeerTimeout):
        link_timers.check_established(35.0, rekey_running=False)
    link_timers, _ = timers(sent=99.0, received=99.0)
    assert link_timers.check_established(100.0, rekey_running=False).start_rekey
    link_timers, _ = timers(sent=149.0, received=149.0)  # a rekey ran but never completed
    with pytest.raises(SessionExpired):
        link_timers.check_established(150.0, rekey_running=True)


def test_a_record_queued_under_a_young_key_is_never_sealed_under_it_once_too_old() -> None:
    """Sealing waits for a call that passes `now`: the key's age is checked then."""
    cfg = config(rekey_after_time=10.0, reject_after_time=15.0, keepalive_interval=100.0)
    pair = make_pair(initiator_config=cfg, responder_config=cfg)
    stream = pair.initiator.open_stream(destination(pair), 1)
    pair.initiator.send_stream_data(stream, b"queued at 0, young key")
    assert pair.initiator.data_to_send(15.0) == b""  # the key is 15 s old now: nothing leaves
    assert not pair.initiator.established
    assert pair.initiator.next_timer_deadline() == 15.0
    with pytest.raises(SessionExpired):
        pair.initiator.handle_timer(15.0)


def test_the_deadline_moves_earlier_only_with_a_new_deadline_version() -> None:
    """An adapter re-reads next_timer_deadline() only when deadline_version changed: while it
    stays the same, the deadline may only have moved later. Checked after every step of a
    link's life: traffic both ways, rekeys by time and by message count, keepalives, a close."""
    pair = make_pair(
        initiator_config=config(
            rekey_after_time=30.0,
            reject_after_time=45.0,
            keepalive_interval=3.0,
            rekey_after_messages=7,
        ),
        responder_config=config(keepalive_interval=4.0, rekey_after_messages=11),
    )
    sides = (pair.initiator, pair.responder)
    seen = {id(conn): (conn.deadline_version, conn.next_timer_deadline()) for conn in sides}

    def check() -> None:
        for conn in sides:
            version, deadline = conn.deadline_version, conn.next_timer_deadline()
            last_version, last_deadline = seen[id(conn)]
            if version == last_version and last_deadline is not None:
                assert deadline is not None and deadline >= last_deadline, (
                    last_deadline,
                    deadline,
                )
            seen[id(conn)] = (version, deadline)

    stream = pair.initiator.open_stream(destination(pair), 80)
    pair.pump()
    check()
    for step in range(200):
        sender = pair.initiator if step % 3 else pair.responder
        if sender is pair.initiator or step > 2:
            sender.send_stream_data(stream, b"x" * (step % 50 + 1))
        check()
        pair.transfer("i" if sender is pair.initiator else "r")
        check()
        pair.pump()
        check()
        pair.tick(0.7 if step % 5 else 2.9)
        check()
        for name in ("i", "r"):
            for event in pair.take(name):
                if isinstance(event, ev.StreamData):
                    pair.side(name).acknowledge(stream, len(event.data))
        check()
    assert pair.initiator.stats.rekeys >= 3
    pair.initiator.close("done", pair.now)
    check()
    assert pair.initiator.next_timer_deadline() is None
