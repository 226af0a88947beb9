"""The routing engine (altmesh.mesh) at scale, beside plain baselines measured in the same run.
No processes, no sockets: one core, in this process (the engine is sans-IO). Exits 1 on any
error, or if a route differs from the baseline's.

- Route computation for 1000 relays (random partial mesh, degree 3-8) and 100,000 attached
  addresses (100 per relay), in one relay's router: a link of it goes down or up and
  `handle_timer` recomputes (shortest paths, next hops, contested addresses). Peer: a bare
  Dijkstra over the same graph as integer lists (no two-way check, no tie-break, no tables).
- `next_hop(address)` per second, the forwarding hot path. Peer: one dict lookup of the same
  addresses.
- Memory of that router's database and tables (tracemalloc), beside the announcements' own bytes
  and what the router counts against max_database_bytes.
- Convergence after a link cut in a simulated mesh of RELAYS relays (default 300, `--relays`):
  simulated time until the last route changed, and payloads sent, beside the payloads of an
  ideal flood (each new announcement crossing each link once). The 1000-relay simulation runs in
  files/relay/tests/mesh/test_scale.py and prints the same figures.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import random
import statistics
import sys
import time
import tracemalloc

from altmesh.mesh import Announcement, LinkStateRouter, RoutingConfig, cost_for_rtt
from altmesh.mesh.simulation import SimulatedMesh, random_partial_mesh, router_id
from altmesh.mesh.wire import encode_announcement, pack_payloads

PREFIX = ipaddress.IPv6Network("fd00:be9c::/48")
RELAYS = 1000
ADDRESSES_PER_RELAY = 100
ROUNDS = 20


def address(relay: int, n: int) -> ipaddress.IPv6Address:
    return PREFIX[relay * 1000 + n + 1]


def mesh_costs(
    links: dict[tuple[int, int], float], config: RoutingConfig
) -> dict[tuple[int, int], int]:
    cost = {}
    for (i, j), rtt in links.items():
        cost[(i, j)] = cost[(j, i)] = cost_for_rtt(rtt, config)
    return cost


def announcements(ids: list[bytes], cost: dict[tuple[int, int], int]) -> list[bytes]:
    """Every relay's announcement but relay 0's, as relay 0 would receive them."""
    neighbors: dict[int, list[tuple[bytes, int]]] = {i: [] for i in range(len(ids))}
    for (i, j), c in cost.items():
        neighbors[i].append((ids[j], c))
    return [
        encode_announcement(
            Announcement(
                ids[i],
                1,
                3600,
                0,
                links=tuple(sorted(neighbors[i])),
                addresses=tuple(address(i, n) for n in range(ADDRESSES_PER_RELAY)),
            )
        )
        for i in range(1, len(ids))
    ]


def build_router(
    ids: list[bytes], cost: dict[tuple[int, int], int], payloads: list[bytes]
) -> LinkStateRouter:
    config = RoutingConfig()
    router = LinkStateRouter(ids[0], now=0.0, first_sequence=1, config=config)
    mine = sorted(j for (i, j) in cost if i == 0)
    for j in mine:
        router.neighbor_up(ids[j], 0.0)
        router.observe_rtt(ids[j], (cost[(0, j)] - config.hop_cost) * config.rtt_quantum, 0.0)
    router.set_destinations([address(0, n) for n in range(ADDRESSES_PER_RELAY)], 0.0)
    for payload in payloads:
        router.receive(ids[mine[0]], payload, 0.0)
    settle(router, 0.0)
    return router


def settle(router: LinkStateRouter, now: float) -> float:
    """Run the timers due in the next 5 s; return the CPU time of the route computations."""
    spent = 0.0
    while (deadline := router.next_timer_deadline()) <= now + 5.0:
        runs = router.stats.spf_runs
        started = time.perf_counter()
        router.handle_timer(deadline)
        elapsed = time.perf_counter() - started
        if router.stats.spf_runs != runs:
            spent += elapsed
        router.messages_to_send(deadline)
        now = max(now, deadline)
    return spent


def bare_dijkstra(n: int, cost: dict[tuple[int, int], int]) -> list[float]:
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for (i, j), c in cost.items():
        out[i].append((j, c))
    distance = [float("inf")] * n
    distance[0] = 0
    heap = [(0, 0)]
    while heap:
        here, u = heapq.heappop(heap)
        if here > distance[u]:
            continue
        for v, c in out[u]:
            if here + c < distance[v]:
                distance[v] = here + c
                heapq.heappush(heap, (here + c, v))
    return distance


def route_computation(rng: random.Random) -> None:
    config = RoutingConfig()
    ids = [router_id(i) for i in range(RELAYS)]
    links = random_partial_mesh(RELAYS, rng)
    cost = mesh_costs(links, config)
    payloads = pack_payloads(announcements(ids, cost))
    tracemalloc.start()
    router = build_router(ids, cost, payloads)
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stats = router.stats
    assert stats.destinations == RELAYS * ADDRESSES_PER_RELAY, stats
    expected = bare_dijkstra(RELAYS, cost)
    for i in range(1, RELAYS):
        route = router.route(address(i, 0))
        assert route is not None and route.cost == expected[i], (i, route, expected[i])

    neighbor = ids[sorted(j for (i, j) in cost if i == 0)[-1]]
    ours, bare = [], []
    now = 10.0
    for n in range(ROUNDS):
        if n % 2 == 0:
            router.neighbor_down(neighbor, now)
        else:
            router.neighbor_up(neighbor, now)
            router.observe_rtt(neighbor, 0.01, now)
        ours.append(settle(router, now))
        now += 60.0
        started = time.perf_counter()
        bare_dijkstra(RELAYS, cost)
        bare.append(time.perf_counter() - started)
    print(
        f"  route computation, {RELAYS} relays, {len(links)} links,"
        f" {stats.destinations} addresses: median {statistics.median(ours) * 1000:6.1f} ms,"
        f" best {min(ours) * 1000:6.1f} ms   | bare Dijkstra, same graph:"
        f" median {statistics.median(bare) * 1000:6.1f} ms"
    )

    sample = [
        address(rng.randrange(1, RELAYS), rng.randrange(ADDRESSES_PER_RELAY))
        for _ in range(100_000)
    ]
    table = {int(a): ids[1] for a in sample}
    started = time.perf_counter()
    for a in sample:
        router.next_hop(a)
    lookups = len(sample) / (time.perf_counter() - started)
    started = time.perf_counter()
    for a in sample:
        table.get(int(a))
    plain = len(sample) / (time.perf_counter() - started)
    print(
        f"  next_hop(address): {lookups / 1e6:5.2f} M/s"
        f"   | one dict lookup of the same addresses: {plain / 1e6:5.2f} M/s"
    )
    print(
        f"  database and tables: {traced / 2**20:6.1f} MiB traced"
        f" ({traced / RELAYS / 1024:.1f} KiB per relay,"
        f" {traced / stats.destinations:.0f} B per address);"
        f" counted against max_database_bytes: {stats.database_bytes / 2**20:.1f} MiB"
        f"   | the announcements' own bytes: {stats.database_wire_bytes / 2**20:.1f} MiB"
    )


def convergence_after_cut(rng: random.Random, relays: int) -> None:
    config = RoutingConfig()
    ids = [router_id(i) for i in range(relays)]
    links = random_partial_mesh(relays, rng)
    mesh = SimulatedMesh(config)
    for i, identity in enumerate(ids):
        mesh.add_router(identity, destinations=[address(i, 0)])
    started = time.process_time()
    for (i, j), rtt in sorted(links.items()):
        mesh.connect(ids[i], ids[j], rtt)
    mesh.run_until_quiet()
    startup_cpu = time.process_time() - started
    startup, startup_payloads = mesh.last_route_change, mesh.traffic.payloads
    mesh.run(60.0)
    first = mesh.routers[ids[0]]
    counts: dict[bytes, int] = {}
    for i in range(1, relays):
        hop = first.next_hop(address(i, 0))
        assert hop is not None
        counts[hop] = counts.get(hop, 0) + 1
    busiest = max(counts, key=counts.__getitem__)
    originations = sum(r.stats.originations for r in mesh.routers.values())
    cut_at, payloads = mesh.now, mesh.traffic.payloads
    mesh.disconnect(ids[0], busiest)
    mesh.run_until_quiet()
    new = sum(r.stats.originations for r in mesh.routers.values()) - originations
    sent = mesh.traffic.payloads - payloads
    assert all(
        mesh.routers[r].next_hop(address(i, 0)) is not None
        for r in ids[:10]
        for i in range(relays)
        if mesh.routers[r].router_id != ids[i]
    )
    print(
        f"  {relays} relays, {len(links)} links: start-up converged in"
        f" {startup:.3f} s simulated, {startup_payloads} payloads ({startup_cpu:.1f} s CPU)"
    )
    print(
        f"  cut of a link carrying {counts[busiest]} of relay 0's routes: converged"
        f" {mesh.last_route_change - cut_at:.3f} s later (simulated), {sent} payloads"
        f"   | ideal flood of its {new} announcements: {new * len(links)} payloads"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--relays", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(2026)
    print("routing engine, one core, in process")
    route_computation(rng)
    convergence_after_cut(rng, args.relays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
