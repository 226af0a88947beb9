"""A flapping link causes no storm: 100 ups and downs in 10 simulated seconds make its two ends
originate a handful of times (throttle with backoff), so the rest of the mesh carries a bounded
number of payloads; the link itself carries the database once per up, as it must."""

from __future__ import annotations

import random

from altmesh.mesh import RoutingConfig, cost_for_rtt
from altmesh.mesh.simulation import SimulatedMesh, random_partial_mesh, router_id

from .helpers import PREFIX
from .test_scale import id_ranks, mismatches, reference_next_hops


def test_a_link_flapping_100_times_in_10_seconds_makes_a_bounded_number_of_messages() -> None:
    rng = random.Random(10)
    relays = 30
    links = random_partial_mesh(relays, rng)
    ids = [router_id(i) for i in range(relays)]
    mesh = SimulatedMesh(RoutingConfig())
    for i, identity in enumerate(ids):
        mesh.add_router(identity, destinations=[PREFIX[i + 1]])
    for (i, j), rtt in sorted(links.items()):
        mesh.connect(ids[i], ids[j], rtt)
    mesh.run_until_quiet()
    mesh.run(60.0)
    (i, j), rtt = next(iter(sorted(links.items())))
    a, b = ids[i], ids[j]
    originations = {r: mesh.routers[r].stats.originations for r in (a, b)}
    before = dict(mesh.traffic.by_link)
    for _ in range(100):  # down for 50 ms, up for 50 ms
        mesh.disconnect(a, b)
        mesh.run(0.05)
        mesh.connect(a, b, rtt)
        mesh.run(0.05)
    mesh.run_until_quiet()
    sent = {link: count - before.get(link, 0) for link, count in mesh.traffic.by_link.items()}
    on_link = sent.get((a, b), 0) + sent.get((b, a), 0)
    elsewhere = sum(sent.values()) - on_link
    made = {n: mesh.routers[ids[n]].stats.originations - originations[ids[n]] for n in (i, j)}
    # Backoff: originations 1, 2, 4, 8 s apart, then the final state: at most 5 per end
    # for 200 changes of its links.
    assert all(count <= 5 for count in made.values()), made
    # Each origination crosses each link at most once in each direction.
    bound = sum(made.values()) * 2 * len(links)
    assert elsewhere <= bound, (elsewhere, bound)
    # The flapping link: each up sends both databases (one payload each here), plus what the
    # ends originate.
    assert on_link <= 100 * 2 * 2 + bound, on_link
    print(
        f"\n100 flaps of one link in 10 s: {made} originations, {elsewhere} payloads elsewhere"
        f" (bound {bound}; without throttling about {200 * 2 * len(links)}),"
        f" {on_link} on the link itself"
    )
    # Once it settles (up), every relay routes as the reference does.
    config = mesh.config
    cost = {}
    for (x, y), link_rtt in links.items():
        cost[(x, y)] = cost[(y, x)] = cost_for_rtt(link_rtt, config)
    assert mismatches(mesh, ids, reference_next_hops(relays, cost, id_ranks(ids))) == []
