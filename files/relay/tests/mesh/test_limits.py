"""Database limits: what a hostile relay with a valid key can make a relay hold is bounded;
going over a limit is a counted fault, reported once per neighbor and kind, never growth."""

from __future__ import annotations

import ipaddress

import pytest
from altmesh.mesh import (
    AnnouncementsRejected,
    RouterUsageError,
    RoutingConfig,
    encode_announcement,
)
from altmesh.mesh.wire import pack_payloads

from .helpers import PREFIX, address, announcement, payload, rid, router


def _rejections(events: list[object]) -> dict[str, int]:
    return {e.kind: e.count for e in events if isinstance(e, AnnouncementsRejected)}


def test_origins_beyond_max_origins_are_refused_counted_and_reported_once() -> None:
    r = router(0, neighbors=(1,), config=RoutingConfig(max_origins=50))
    r.receive(rid(1), payload(*(announcement(n, 1) for n in range(100, 200))), 1.0)
    assert r.stats.origins == 50  # us and 49 others
    assert r.stats.rejected == 51
    assert _rejections(r.take_events()) == {"route_limit_origins": 51}
    # Origins it holds are still updated.
    r.receive(rid(1), payload(announcement(100, 2, addresses=[5])), 2.0)
    assert r.stats.announcements_accepted == 50
    assert r.take_events() != []  # routes changed; no new rejection
    assert r.stats.rejected == 51


def test_an_origin_announcing_more_than_max_destinations_is_refused() -> None:
    r = router(0, neighbors=(1,), config=RoutingConfig(max_destinations_per_origin=100))
    r.receive(rid(1), payload(announcement(9, 1, addresses=list(range(101)))), 1.0)
    assert r.stats.destinations == 0
    r.receive(rid(1), payload(announcement(8, 1, addresses=list(range(100)))), 1.0)
    assert r.stats.destinations == 100
    # Over several fragments, it is the total that counts.
    r.receive(
        rid(1),
        payload(
            announcement(7, 1, fragment=1, addresses=list(range(200, 260))),
            announcement(7, 1, fragment=2, addresses=list(range(300, 360))),
        ),
        1.0,
    )
    assert r.stats.destinations == 160
    assert _rejections(r.take_events()) == {"route_limit_destinations": 2}


def test_the_database_never_grows_beyond_max_database_bytes() -> None:
    limit = 200_000
    r = router(0, neighbors=(1,), config=RoutingConfig(max_database_bytes=limit))
    for start in range(1000, 60_000, 1000):
        anns = [announcement(n, 1, addresses=[n]) for n in range(start, start + 1000)]
        for data in pack_payloads([encode_announcement(a) for a in anns]):
            r.receive(rid(1), data, 1.0)
        assert r.stats.database_bytes <= limit
    assert _rejections(r.take_events()) == {"route_limit_bytes": r.stats.rejected}
    assert r.stats.rejected > 50_000


def test_own_destinations_beyond_the_limit_or_outside_the_network_are_caller_errors() -> None:
    r = router(0, config=RoutingConfig(max_destinations_per_origin=10, prefix=PREFIX))
    with pytest.raises(RouterUsageError, match="11 destinations, more than"):
        r.set_destinations([address(n) for n in range(11)], 1.0)
    with pytest.raises(RouterUsageError, match="outside the network's prefix"):
        r.set_destinations([ipaddress.IPv6Address("fd00:dead::1")], 1.0)


def test_a_flood_of_tiny_announcements_leaves_one_event_per_kind_and_neighbor() -> None:
    r = router(0, neighbors=(1, 2), config=RoutingConfig(max_origins=10))
    for sender in (1, 2):
        for n in range(0, 20_000, 500):
            r.receive(
                rid(sender),
                payload(*(announcement(m, 1) for m in range(10_000 + n, 10_500 + n))),
                1.0,
            )
    events = r.take_events()
    rejected = [e for e in events if isinstance(e, AnnouncementsRejected)]
    assert [(e.neighbor, e.kind) for e in rejected] == [
        (rid(1), "route_limit_origins"),
        (rid(2), "route_limit_origins"),
    ]
    # The 9 accepted from relay 1 are duplicates when relay 2 sends them.
    assert sum(e.count for e in rejected) == r.stats.rejected == 2 * (20_000 - 9)
