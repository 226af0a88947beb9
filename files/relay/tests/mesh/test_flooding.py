"""Flooding: a newer announcement goes on to every neighbor but the one it came from; a new
neighbor gets the whole database; output per neighbor coalesces to the newest version and is
paced; a flood of versions of one announcement is sent on at a bounded rate."""

from __future__ import annotations

import dataclasses

from altmesh.mesh import RoutingConfig, decode_payload
from altmesh.mesh.constants import MAX_PAYLOAD_LEN

from .helpers import announcement, payload, rid, router, sent_announcements


def _origins(messages: list[tuple[bytes, bytes]]) -> dict[bytes, list[tuple[bytes, int]]]:
    return {
        neighbor: [(a.origin, a.sequence) for a in anns]
        for neighbor, anns in sent_announcements(messages).items()
    }


def test_a_newer_announcement_goes_to_every_neighbor_but_the_one_it_came_from() -> None:
    r = router(0, neighbors=(1, 2, 3))
    r.receive(rid(1), payload(announcement(9, 5, links={1: 10})), 1.0)
    assert _origins(r.messages_to_send(1.0)) == {
        rid(2): [(rid(9), 5)],
        rid(3): [(rid(9), 5)],
    }


def test_a_duplicate_or_an_older_version_goes_nowhere() -> None:
    r = router(0, neighbors=(1, 2))
    r.receive(rid(1), payload(announcement(9, 5)), 1.0)
    r.messages_to_send(1.0)
    r.receive(rid(2), payload(announcement(9, 5)), 2.0)
    r.receive(rid(2), payload(announcement(9, 4)), 2.0)
    assert r.messages_to_send(2.0) == []
    assert (r.stats.duplicates, r.stats.older) == (1, 1)


def test_a_copy_the_neighbor_sends_first_is_not_sent_back_to_it() -> None:
    r = router(0, neighbors=(1, 2, 3))
    r.receive(rid(1), payload(announcement(9, 5)), 1.0)
    r.receive(rid(2), payload(announcement(9, 5)), 1.0)  # crossed on the wire
    assert _origins(r.messages_to_send(1.0)) == {rid(3): [(rid(9), 5)]}


def test_a_new_neighbor_receives_the_whole_database_ours_first() -> None:
    r = router(0, neighbors=(1,))
    others = [announcement(n, 1, links={1: 10}, addresses=[n]) for n in range(10, 60)]
    r.receive(rid(1), payload(*others), 1.0)
    r.messages_to_send(1.0)
    r.neighbor_up(rid(2), 2.0)
    sent = sent_announcements(r.messages_to_send(2.0))[rid(2)]
    assert sent[0].origin == rid(0)
    assert {a.origin for a in sent[1:]} == {rid(n) for n in range(10, 60)}
    # Each with the lifetime it has left: flooding on ages it.
    assert {a.lifetime for a in sent[1:]} == {3599}


def test_a_large_database_is_sent_in_payloads_within_the_record_limit() -> None:
    r = router(0, neighbors=(1,))
    many = [
        announcement(n, 1, addresses=list(range(n * 1000, n * 1000 + 900))) for n in range(2, 30)
    ]
    for item in many:
        r.receive(rid(1), payload(item), 1.0)
    r.neighbor_up(rid(2), 1.0)
    messages = [p for n, p in r.messages_to_send(1.0) if n == rid(2)]
    assert len(messages) > 1
    assert all(len(p) <= MAX_PAYLOAD_LEN for p in messages)
    assert sum(len(decode_payload(p)) for p in messages) == len(many) + 1


def test_output_coalesces_to_the_newest_version_of_each_announcement() -> None:
    r = router(0, neighbors=(1, 2, 3), config=RoutingConfig(min_flood_interval=0.0))
    for sequence in range(1, 20):
        r.receive(rid(1), payload(announcement(9, sequence, addresses=[sequence])), 1.0)
    sent = sent_announcements(r.messages_to_send(1.0))
    assert [(a.sequence, a.addresses) for a in sent[rid(2)]] == [
        (19, (announcement(9, 19, addresses=[19]).addresses))
    ]
    assert rid(1) not in sent


def test_a_neighbor_is_sent_to_at_most_once_per_flood_pacing() -> None:
    config = RoutingConfig(flood_pacing=0.03)
    r = router(0, neighbors=(1, 2), config=config)
    r.receive(rid(1), payload(announcement(9, 1)), 1.0)
    assert len(r.messages_to_send(1.0)) == 1  # nothing sent to 2 for a while: at once
    r.receive(rid(1), payload(announcement(8, 1)), 1.01)
    r.receive(rid(1), payload(announcement(7, 1)), 1.02)
    assert r.messages_to_send(1.02) == []
    assert r.next_timer_deadline() == 1.03
    (batch,) = r.messages_to_send(1.03)
    assert [a.origin for a in decode_payload(batch[1])] == [rid(8), rid(7)]


def test_versions_of_one_announcement_are_sent_on_at_most_once_per_min_flood_interval() -> None:
    """A hostile origin (or a relay repeating one) cannot make the mesh carry its every version:
    each relay sends on the newest at most once per min_flood_interval."""
    config = RoutingConfig(min_flood_interval=0.5, flood_pacing=0.0)
    r = router(0, neighbors=(1, 2), config=config)
    sent_sequences = []
    now = 1.0
    for sequence in range(1, 101):  # 100 versions in 1 s
        r.receive(rid(1), payload(announcement(9, sequence)), now)
        if now >= r.next_timer_deadline():
            r.handle_timer(now)
        for _neighbor, data in r.messages_to_send(now):
            sent_sequences.extend(a.sequence for a in decode_payload(data))
        now = round(now + 0.01, 2)
    r.handle_timer(r.next_timer_deadline())
    for _neighbor, data in r.messages_to_send(r.next_timer_deadline()):
        sent_sequences.extend(a.sequence for a in decode_payload(data))
    assert sent_sequences[0] == 1 and sent_sequences[-1] == 100
    assert len(sent_sequences) <= 4  # t = 1.0, 1.5, 2.0 (and the last version)


def test_an_announcement_about_to_expire_is_not_sent() -> None:
    r = router(0, neighbors=(1, 2))
    r.receive(rid(1), payload(announcement(9, 1, lifetime=2)), 1.0)
    assert r.messages_to_send(2.5) == []  # 0.5 s left: less than the 1 s the wire can say


def test_fields_are_unchanged_but_the_lifetime_when_sent_on() -> None:
    r = router(0, neighbors=(1, 2))
    original = announcement(9, 3, links={1: 17, 4: 9}, addresses=[1, 2, 3], lifetime=900)
    r.receive(rid(1), payload(original), 1.0)
    (sent,) = sent_announcements(r.messages_to_send(11.0))[rid(2)]
    assert sent == dataclasses.replace(original, lifetime=890)
