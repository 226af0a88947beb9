"""Simulation at scale: 1000 relays in a random partial mesh (degree 3-8) wired by the in-memory
bus converge, every relay routing every destination as a plain reference computation does; after
a link cut, every relay routes around it. Prints the simulated convergence times and message
counts (run with -s to see them)."""

from __future__ import annotations

import heapq
import random
import time

from altmesh.mesh import RoutingConfig, cost_for_rtt
from altmesh.mesh.simulation import SimulatedMesh, random_partial_mesh, router_id

from .helpers import PREFIX

RELAYS = 1000


def reference_next_hops(
    n: int, cost: dict[tuple[int, int], int], rank: list[int]
) -> list[list[int | None]]:
    """hop[r][d]: the lowest-id neighbor of r on a shortest path to d (plain Dijkstra from each
    destination over the links both ways, then a look at each relay's neighbors)."""
    into: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # v: [(u, cost u -> v)]
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # u: [(v, cost)], by id rank
    for (u, v), c in cost.items():
        into[v].append((u, c))
        out[u].append((v, c))
    for edges in out:
        edges.sort(key=lambda edge: rank[edge[0]])
    hop: list[list[int | None]] = [[None] * n for _ in range(n)]
    for d in range(n):
        to_d = [float("inf")] * n
        to_d[d] = 0
        heap = [(0, d)]
        while heap:
            here, v = heapq.heappop(heap)
            if here > to_d[v]:
                continue
            for u, c in into[v]:
                if here + c < to_d[u]:
                    to_d[u] = here + c
                    heapq.heappush(heap, (here + c, u))
        for r in range(n):
            if r != d:
                for j, c in out[r]:
                    if c + to_d[j] == to_d[r]:
                        hop[r][d] = j
                        break
    return hop


def mismatches(
    mesh: SimulatedMesh, ids: list[bytes], hop: list[list[int | None]]
) -> list[tuple[int, int]]:
    """(relay, destination) pairs whose next hop is not the reference's."""
    addresses = [PREFIX[d + 1] for d in range(len(ids))]
    wrong = []
    for r, identity in enumerate(ids):
        next_hop = mesh.routers[identity].next_hop
        got = [next_hop(a) for a in addresses]
        expected = [None if j is None else ids[j] for j in hop[r]]
        if got != expected:
            wrong.extend((r, d) for d in range(len(ids)) if got[d] != expected[d])
    return wrong


def test_a_thousand_relays_converge_and_route_around_a_cut_link() -> None:
    rng = random.Random(2026)
    config = RoutingConfig()
    links = random_partial_mesh(RELAYS, rng)
    ids = [router_id(i) for i in range(RELAYS)]
    rank = id_ranks(ids)
    mesh = SimulatedMesh(config)
    for i, identity in enumerate(ids):
        mesh.add_router(identity, destinations=[PREFIX[i + 1]])
    started = time.process_time()
    for (i, j), rtt in sorted(links.items()):
        mesh.connect(ids[i], ids[j], rtt)
    mesh.run_until_quiet()
    cpu = time.process_time() - started
    converged, payloads = mesh.last_route_change, mesh.traffic.payloads
    cost = {}
    for (i, j), rtt in links.items():
        cost[(i, j)] = cost[(j, i)] = cost_for_rtt(rtt, config)
    assert mismatches(mesh, ids, reference_next_hops(RELAYS, cost, rank)) == []
    print(
        f"\n{RELAYS} relays, {len(links)} links: converged {converged:.3f} s (simulated) after"
        f" all links came up, {payloads} payloads ({mesh.traffic.payload_bytes / 1e6:.1f} MB);"
        f" {cpu:.1f} s CPU"
    )

    # Cut the link most routes of relay 0 use, once the mesh is quiet.
    mesh.run(60.0)
    first = mesh.routers[ids[0]]
    counts: dict[bytes, int] = {}
    for d in range(1, RELAYS):
        hop = first.next_hop(PREFIX[d + 1])
        if hop is not None:
            counts[hop] = counts.get(hop, 0) + 1
    busiest = max(counts, key=counts.__getitem__)
    b = ids.index(busiest)
    cut_at, payloads = mesh.now, mesh.traffic.payloads
    computations = sum(r.stats.spf_runs for r in mesh.routers.values())
    mesh.disconnect(ids[0], busiest)
    mesh.run_until_quiet()
    computations = sum(r.stats.spf_runs for r in mesh.routers.values()) - computations
    del cost[(0, b)], cost[(b, 0)]
    assert mismatches(mesh, ids, reference_next_hops(RELAYS, cost, rank)) == []
    print(
        f"cut a link {counts[busiest]} routes of relay 0 used: converged"
        f" {mesh.last_route_change - cut_at:.3f} s later, {mesh.traffic.payloads - payloads}"
        f" payloads; {computations} relays recomputed their routes"
    )


def id_ranks(ids: list[bytes]) -> list[int]:
    order = sorted(range(len(ids)), key=ids.__getitem__)
    rank = [0] * len(ids)
    for position, i in enumerate(order):
        rank[i] = position
    return rank
