"""Ageing: announcements carry their remaining lifetime; relays drop expired ones with their
routes; a live relay refreshes its own before they expire."""

from __future__ import annotations

from altmesh.mesh import RoutingConfig
from altmesh.mesh.simulation import SimulatedMesh

from .helpers import address, announcement, payload, rid, router, sent_announcements


def test_an_expired_announcement_is_dropped_with_its_routes() -> None:
    r = router(0, neighbors=(1,))
    r.receive(
        rid(1),
        payload(
            announcement(1, 1, links={0: 10, 9: 10}, addresses=[1]),
            announcement(9, 1, links={1: 10}, addresses=[9], lifetime=100),
        ),
        1.0,
    )
    r.handle_timer(r.next_timer_deadline())
    assert r.next_hop(address(9)) == rid(1)
    assert r.next_timer_deadline() <= 101.0
    r.handle_timer(101.0)  # relay 9's announcement ran out
    while r.next_timer_deadline() <= 102.0:
        r.handle_timer(r.next_timer_deadline())
    assert r.next_hop(address(9)) is None
    assert r.relay_next_hop(rid(9)) is None
    assert r.next_hop(address(1)) == rid(1)
    assert (r.stats.expired, r.stats.origins) == (1, 2)


def test_a_live_relay_refreshes_its_announcements_so_its_routes_never_age_out() -> None:
    mesh = SimulatedMesh(RoutingConfig(lifetime=600, refresh_interval=300.0, max_lifetime=600))
    ids = [rid(n) for n in range(3)]
    for n, identity in enumerate(ids):
        mesh.add_router(identity, destinations=[address(n)])
    mesh.connect(ids[0], ids[1], 0.01)
    mesh.connect(ids[1], ids[2], 0.01)
    mesh.run_until_quiet()
    for _ in range(36):  # three hours, six lifetimes; look every 5 minutes
        mesh.run(300.0)
        assert mesh.routers[ids[0]].next_hop(address(2)) == ids[1]
        assert mesh.routers[ids[2]].next_hop(address(0)) == ids[1]
    assert all(mesh.routers[i].stats.expired == 0 for i in ids)
    assert mesh.routers[ids[0]].stats.originations >= 36  # one refresh per 300 s


def test_a_lifetime_above_max_lifetime_is_capped() -> None:
    r = router(0, neighbors=(1, 2), config=RoutingConfig(max_lifetime=7200))
    r.receive(rid(1), payload(announcement(9, 1, lifetime=65535)), 1.0)
    (sent,) = sent_announcements(r.messages_to_send(1.0))[rid(2)]
    assert sent.lifetime == 7200
    while (deadline := r.next_timer_deadline()) <= 7201.0:
        r.handle_timer(deadline)
        r.messages_to_send(deadline)
    assert r.stats.expired == 1  # relay 9's, at 1 + 7200 s
    assert r.stats.origins == 1
