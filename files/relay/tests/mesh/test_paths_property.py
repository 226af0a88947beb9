"""Property: on random meshes, with asymmetric costs, ties and one-way (half-open) links, every
relay's next hop for every destination is the one a plain Floyd-Warshall computation gives
(lowest-id first hop among the shortest paths), and one-way links are never used."""

from __future__ import annotations

import math

from altmesh.mesh import RoutingConfig, cost_for_rtt
from altmesh.mesh.simulation import SimulatedMesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import address, rid

NO_LINK, TWO_WAY, ONLY_FIRST_UP, ONLY_SECOND_UP = range(4)
RTTS = (0.0, 0.005, 0.010, 0.030)  # few values, so that equal-cost paths are common


def floyd_warshall(n: int, cost: dict[tuple[int, int], int]) -> list[list[float]]:
    distance = [[0.0 if i == j else math.inf for j in range(n)] for i in range(n)]
    for (i, j), c in cost.items():
        distance[i][j] = c
    for k in range(n):
        for i in range(n):
            for j in range(n):
                if distance[i][k] + distance[k][j] < distance[i][j]:
                    distance[i][j] = distance[i][k] + distance[k][j]
    return distance


@st.composite
def meshes(draw: st.DrawFn) -> tuple[int, dict[tuple[int, int], tuple[int, float, float]]]:
    n = draw(st.integers(2, 9))
    links = {}
    for i in range(n):
        for j in range(i + 1, n):
            kind = draw(st.sampled_from((NO_LINK, TWO_WAY, TWO_WAY, ONLY_FIRST_UP, ONLY_SECOND_UP)))
            if kind != NO_LINK:
                links[(i, j)] = (kind, draw(st.sampled_from(RTTS)), draw(st.sampled_from(RTTS)))
    return n, links


def _check(mesh: SimulatedMesh, ids: list[bytes], cost: dict[tuple[int, int], int]) -> None:
    n = len(ids)
    distance = floyd_warshall(n, cost)
    for i in range(n):
        router = mesh.routers[ids[i]]
        for d in range(n):
            hops = [
                j
                for j in range(n)
                if (i, j) in cost
                and distance[i][d] < math.inf
                and cost[(i, j)] + distance[j][d] == distance[i][d]
            ]
            expected = None if d == i or not hops else min(ids[j] for j in hops)
            assert router.next_hop(address(d + 1)) == expected, (i, d)
            route = router.route(address(d + 1))
            if expected is not None:
                assert route is not None and route.cost == distance[i][d]
                used = list(zip(route.path, route.path[1:], strict=False))
                assert all((ids.index(x), ids.index(y)) in cost for x, y in used)


def _build(
    n: int, links: dict[tuple[int, int], tuple[int, float, float]], config: RoutingConfig
) -> tuple[SimulatedMesh, list[bytes], dict[tuple[int, int], int]]:
    mesh = SimulatedMesh(config)
    ids = [rid(i) for i in range(n)]
    for i in range(n):
        mesh.add_router(ids[i], destinations=[address(i + 1)])
    cost: dict[tuple[int, int], int] = {}
    for (i, j), (kind, rtt_i, rtt_j) in links.items():
        if kind in (TWO_WAY, ONLY_FIRST_UP):
            mesh.open_half(ids[i], ids[j], rtt_i)
        if kind in (TWO_WAY, ONLY_SECOND_UP):
            mesh.open_half(ids[j], ids[i], rtt_j)
        if kind == TWO_WAY:  # each end announces the cost it measured
            cost[(i, j)] = cost_for_rtt(rtt_i, config)
            cost[(j, i)] = cost_for_rtt(rtt_j, config)
    return mesh, ids, cost


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meshes())
def test_next_hops_match_floyd_warshall_and_one_way_links_are_never_used(
    mesh_spec: tuple[int, dict[tuple[int, int], tuple[int, float, float]]],
) -> None:
    mesh, ids, cost = _build(*mesh_spec, RoutingConfig())
    mesh.run_until_quiet()
    _check(mesh, ids, cost)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meshes(), st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8), st.sampled_from(RTTS))))
def test_next_hops_still_match_after_links_fail_and_come_back(
    mesh_spec: tuple[int, dict[tuple[int, int], tuple[int, float, float]]],
    changes: list[tuple[int, int, float]],
) -> None:
    """Links cut and (re)made one at a time, each change settling before the next: what the
    relays skip recomputing (no tight link changed) must not leave a stale route."""
    n, links = mesh_spec
    half_open = {pair for pair, (kind, _a, _b) in links.items() if kind != TWO_WAY}
    config = RoutingConfig()
    mesh, ids, cost = _build(*mesh_spec, config)
    mesh.run_until_quiet()
    for i, j, rtt in changes:
        i, j = sorted((i % n, j % n))
        if i == j or (i, j) in half_open:
            continue  # leave half-open links as they are
        if (i, j) in cost:
            mesh.disconnect(ids[i], ids[j])
            del cost[(i, j)], cost[(j, i)]
        else:
            mesh.connect(ids[i], ids[j], rtt)
            cost[(i, j)] = cost[(j, i)] = cost_for_rtt(rtt, config)
        mesh.run(40.0)  # past the longest origination hold
        mesh.run_until_quiet()
        _check(mesh, ids, cost)
