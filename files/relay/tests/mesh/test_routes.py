"""Routes: only links both ends announce are used; ties go to the lowest first-hop id whatever
the arrival order; address -> origin relay -> next hop; contested addresses go to the nearest
claimant; large destination sets are split over fragments."""

from __future__ import annotations

import ipaddress

import pytest
from altmesh.mesh import LinkStateRouter, RouterUsageError
from altmesh.mesh.constants import FRAGMENT0_ADDRESSES, FRAGMENT_ADDRESSES, MAX_PAYLOAD_LEN
from altmesh.mesh.simulation import SimulatedMesh

from .helpers import PREFIX, address, announcement, payload, rid, router


def _settle(r: LinkStateRouter, now: float) -> float:
    while (deadline := r.next_timer_deadline()) <= now + 5.0:
        r.handle_timer(deadline)
        r.messages_to_send(deadline)
        now = max(now, deadline)
    return now


def test_a_link_announced_by_one_end_only_is_not_used() -> None:
    r = router(0, neighbors=(1,))
    r.receive(
        rid(1),
        payload(
            announcement(1, 1, links={0: 10, 9: 10}),
            announcement(9, 1, links={}, addresses=[9]),  # 9 does not list 1
        ),
        1.0,
    )
    _settle(r, 1.0)
    assert r.next_hop(address(9)) is None
    r.receive(rid(1), payload(announcement(9, 2, links={1: 10}, addresses=[9])), 10.0)
    _settle(r, 10.0)
    assert r.next_hop(address(9)) == rid(1)


def test_our_link_counts_only_while_it_is_up_and_the_neighbor_lists_us() -> None:
    r = router(0, neighbors=(1,))
    r.receive(rid(1), payload(announcement(1, 1, links={}, addresses=[1])), 1.0)
    _settle(r, 1.0)
    assert r.next_hop(address(1)) is None  # 1 does not list us (yet)
    r.receive(rid(1), payload(announcement(1, 2, links={0: 10}, addresses=[1])), 2.0)
    _settle(r, 2.0)
    assert r.next_hop(address(1)) == rid(1)
    r.neighbor_down(rid(1), 3.0)
    assert r.next_hop(address(1)) is None  # at once, before routes are recomputed


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_equal_cost_paths_go_to_the_lowest_first_hop_id_whatever_the_arrival_order(
    order: tuple[int, int],
) -> None:
    r = router(0, neighbors=(1, 2))
    for n in order:  # 0 - 1 - 9 and 0 - 2 - 9, all links of cost 10
        r.receive(rid(n), payload(announcement(n, 1, links={0: 10, 9: 10})), 1.0)
    r.receive(rid(order[0]), payload(announcement(9, 1, links={1: 10, 2: 10}, addresses=[9])), 1)
    r.observe_rtt(rid(1), 0.0, 1.0)  # our side costs hop_cost (10) + 0 on both links
    r.observe_rtt(rid(2), 0.0, 1.0)
    _settle(r, 1.0)
    assert r.next_hop(address(9)) == min(rid(1), rid(2))


def test_an_address_attached_here_has_no_next_hop_and_a_local_route() -> None:
    r = router(0, neighbors=(1,))
    r.set_destinations([address(5)], 1.0)
    _settle(r, 1.0)
    assert r.next_hop(address(5)) is None
    route = r.route(address(5))
    assert route is not None
    assert (route.origin, route.next_hop, route.cost, route.path) == (rid(0), None, 0, (rid(0),))
    assert r.route(address(6)) is None


def test_a_route_names_its_cost_and_the_relays_on_its_path() -> None:
    mesh = SimulatedMesh()
    ids = [rid(n) for n in range(4)]
    for n, identity in enumerate(ids):
        mesh.add_router(identity, destinations=[address(n)])
    mesh.connect(ids[0], ids[1], 0.010)  # cost 20 each
    mesh.connect(ids[1], ids[2], 0.010)
    mesh.connect(ids[2], ids[3], 0.010)
    mesh.connect(ids[0], ids[3], 0.100)  # cost 110: the long way round is cheaper
    mesh.run_until_quiet()
    route = mesh.routers[ids[0]].route(address(3))
    assert route is not None
    assert (route.next_hop, route.cost, route.path) == (ids[1], 60, tuple(ids))


def test_an_address_two_relays_announce_goes_to_the_nearer_one() -> None:
    r = router(0, neighbors=(1,))
    r.receive(
        rid(1),
        payload(
            announcement(1, 1, links={0: 10, 8: 10}, addresses=[7]),
            announcement(8, 1, links={1: 10, 9: 10}, addresses=[]),
            announcement(9, 1, links={8: 10}, addresses=[7]),
        ),
        1.0,
    )
    _settle(r, 1.0)
    route = r.route(address(7))
    assert route is not None and route.origin == rid(1)
    assert r.stats.contested_destinations == 1
    # The node moved away from relay 1: relay 9 has it now.
    r.receive(rid(1), payload(announcement(1, 2, links={0: 10, 8: 10})), 5.0)
    _settle(r, 5.0)
    route = r.route(address(7))
    assert route is not None and route.origin == rid(9) and route.next_hop == rid(1)
    assert r.stats.contested_destinations == 0


def test_a_large_destination_set_is_split_over_fragments_and_every_address_routed() -> None:
    count = FRAGMENT0_ADDRESSES + 2 * FRAGMENT_ADDRESSES + 10  # four fragments
    mesh = SimulatedMesh()
    a, b = rid(0), rid(1)
    many = [PREFIX[n] for n in range(1, count + 1)]
    mesh.add_router(a, destinations=many)
    mesh.add_router(b)
    mesh.connect(a, b, 0.01)
    mesh.run_until_quiet()
    assert mesh.routers[b].stats.fragments == 4 + 1
    assert all(mesh.routers[b].next_hop(x) == a for x in many)
    assert max(mesh.traffic.by_link.values()) >= 1
    # Dropping half of them re-originates only what changed, and routes follow.
    payloads_before = mesh.traffic.payload_bytes
    mesh.set_destinations(a, many[: count // 2])
    mesh.run_until_quiet()
    assert sum(mesh.routers[b].next_hop(x) == a for x in many) == count // 2
    assert mesh.traffic.payload_bytes - payloads_before < 3 * MAX_PAYLOAD_LEN


def test_a_stream_destination_must_be_an_address() -> None:
    r = router(0)
    with pytest.raises(RouterUsageError, match="is an IPv6Address"):
        r.set_destinations(["fd00:5100::1"], 1.0)  # type: ignore[list-item]
    assert r.next_hop(ipaddress.IPv6Address("fd00:5100::1")) is None
