"""Draining (a relay's SIGTERM): the relay announces its links at MAX_COST, at once whatever the
origination throttle, so that the others route new streams around it; it still forwards what
reaches it, its own nodes stay reachable, and a path with no other way still crosses it."""

from __future__ import annotations

from altmesh.mesh.constants import MAX_COST
from altmesh.mesh.simulation import SimulatedMesh

from .helpers import address, rid


def ring(size: int) -> tuple[SimulatedMesh, list[bytes]]:
    mesh = SimulatedMesh()
    ids = [rid(n) for n in range(size)]
    for n, identity in enumerate(ids):
        mesh.add_router(identity, destinations=[address(n)])
    for n in range(size):
        mesh.connect(ids[n], ids[(n + 1) % size], 0.010)
    mesh.run_until_quiet()
    return mesh, ids


def ring_and_path(size: int) -> tuple[SimulatedMesh, bytes, bytes, bytes, bytes]:
    """A 4-ring r0, via, r2, other: r0's equal-cost path to r2 goes over `via` (the lower id),
    the other way is over `other`."""
    mesh, (r0, r1, r2, r3) = ring(size)
    via, other = min(r1, r3), max(r1, r3)
    assert mesh.routers[r0].next_hop(address(2)) == via  # equal cost: lowest id
    return mesh, r0, via, r2, other


def test_a_draining_relay_is_routed_around_where_another_path_exists() -> None:
    mesh, r0, r1, r2, r3 = ring_and_path(4)
    mesh.drain(r1)
    mesh.run_until_quiet()
    assert mesh.routers[r0].next_hop(address(2)) == r3
    assert mesh.routers[r2].next_hop(address(0)) == r3
    # What still reaches the draining relay is forwarded: its own routes are intact.
    assert mesh.routers[r1].next_hop(address(2)) == r2
    assert mesh.routers[r1].next_hop(address(0)) == r0
    # Its own nodes stay reachable, straight to it.
    n1 = 1 if r1 == rid(1) else 3
    assert mesh.routers[r0].next_hop(address(n1)) == r1
    route = mesh.routers[r0].route(address(n1))
    assert route is not None and route.cost < MAX_COST


def test_a_path_with_no_other_way_still_crosses_a_draining_relay() -> None:
    mesh = SimulatedMesh()
    a, b, c = rid(0), rid(1), rid(2)
    for n, identity in enumerate((a, b, c)):
        mesh.add_router(identity, destinations=[address(n)])
    mesh.connect(a, b, 0.010)
    mesh.connect(b, c, 0.010)
    mesh.run_until_quiet()
    mesh.drain(b)
    mesh.run_until_quiet()
    assert mesh.routers[a].next_hop(address(2)) == b
    route = mesh.routers[a].route(address(2))
    assert route is not None and route.cost > MAX_COST  # the way through it is the dearest


def test_draining_is_announced_at_once_even_when_the_throttle_holds_originations_back() -> None:
    mesh, r0, r1, _r2, r3 = ring_and_path(4)
    # Flap the RTT of r1's link back to r0 (r0's path to r2 does not use that direction) so
    # that r1's origination hold grows.
    for n in range(6):
        mesh.sample_rtt(r1, r0, 0.010 + 0.5 * (n % 2))
        mesh.run(0.5)
    assert mesh.routers[r0].next_hop(address(2)) == r1
    throttle = mesh.routers[r1]._own.throttle
    assert throttle.earliest() > mesh.now + 2.0  # the precondition: originations held back
    started = mesh.now
    mesh.drain(r1)
    while mesh.routers[r0].next_hop(address(2)) != r3:
        mesh.run(0.01)
        assert mesh.now - started < 1.0, "the drain was not announced within 1 s"
    assert mesh.routers[r1].draining


def test_drain_is_idempotent_and_a_draining_relay_keeps_announcing_at_max_cost() -> None:
    mesh, r0, r1, r2, _r3 = ring_and_path(4)
    mesh.drain(r1)
    mesh.drain(r1)
    mesh.sample_rtt(r1, r0, 0.001)  # a cheaper RTT changes nothing it announces
    mesh.run_until_quiet()
    entry = mesh.routers[r2]._db.fragment0[r1]  # what r2 holds of r1
    assert set(entry.costs) == {MAX_COST}
    assert set(entry.neighbors) == {r0, r2}
