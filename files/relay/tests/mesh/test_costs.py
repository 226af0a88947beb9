"""Link costs: smoothed RTT, quantised, plus a cost per hop; hysteresis so that jitter neither
re-floods the mesh nor moves routes, while a real change does both; originations rate-limited."""

from __future__ import annotations

import itertools
import random

from altmesh.mesh import RoutingConfig, cost_for_rtt
from altmesh.mesh.cost import LinkCost
from altmesh.mesh.simulation import SimulatedMesh

from .helpers import address, rid, router, sent_announcements


def test_the_cost_is_the_hop_cost_plus_the_rtt_in_quanta() -> None:
    config = RoutingConfig(hop_cost=10, rtt_quantum=0.001)
    assert cost_for_rtt(0.0, config) == 10
    assert cost_for_rtt(0.0234, config) == 33
    assert cost_for_rtt(1000.0, config) == 65535  # clamped to what the wire carries


def test_the_first_sample_replaces_the_initial_guess_and_later_ones_are_smoothed() -> None:
    link = LinkCost(RoutingConfig(initial_rtt=0.05))
    assert link.announced == 60
    assert link.observe(0.045) is True  # 55, within the hysteresis of 60, is taken all the same
    assert (link.smoothed_rtt, link.announced) == (0.045, 55)
    link = LinkCost(RoutingConfig(initial_rtt=0.05))
    assert link.observe(0.010) is True
    assert (link.smoothed_rtt, link.announced) == (0.010, 20)
    link.observe(0.090)  # one outlier moves the average by 1/8 of the difference only
    assert abs(link.smoothed_rtt - 0.020) < 1e-9


def test_a_change_within_the_hysteresis_is_not_announced() -> None:
    link = LinkCost(RoutingConfig(cost_change_fraction=0.25, cost_change_minimum=2))
    link.observe(0.030)  # cost 40: changes of up to 10 are not announced
    announced = link.announced
    for _ in range(200):
        assert link.observe(0.036) is False or link.announced - announced > 10
    assert link.announced == 40  # the average settled at 36 ms (cost 46): within 40 + 10


def _diamond() -> tuple[SimulatedMesh, list[bytes]]:
    """A reaches D through B (cost 30 + 30) or through C (32 + 30): B wins by 2."""
    mesh = SimulatedMesh()
    a, b, c, d = ids = [rid(n) for n in range(4)]
    for n, identity in enumerate(ids):
        mesh.add_router(identity, destinations=[address(n + 1)])
    mesh.connect(a, b, 0.020)
    mesh.connect(b, d, 0.020)
    mesh.connect(a, c, 0.022)
    mesh.connect(c, d, 0.020)
    mesh.run_until_quiet()
    return mesh, ids


def test_jittered_rtt_samples_neither_reannounce_nor_change_routes() -> None:
    mesh, (a, b, _c, _d) = _diamond()
    assert mesh.routers[a].next_hop(address(4)) == b
    originations = {r: mesh.routers[r].stats.originations for r in (a, b)}
    traffic, last_change = mesh.traffic.payloads, mesh.last_route_change
    jitter = random.Random(3)
    for _ in range(1200):  # ten minutes of samples every 0.5 s, 20 ms +- 6 ms, at both ends
        mesh.sample_rtt(a, b, jitter.uniform(0.014, 0.026))
        mesh.sample_rtt(b, a, jitter.uniform(0.014, 0.026))
        mesh.run(0.5)
    assert {r: mesh.routers[r].stats.originations for r in (a, b)} == originations
    assert mesh.traffic.payloads == traffic  # nothing was flooded
    assert mesh.last_route_change == last_change
    assert mesh.routers[a].next_hop(address(4)) == b


def test_a_real_rtt_change_is_announced_and_moves_routes() -> None:
    mesh, (a, b, c, _d) = _diamond()
    before = mesh.routers[a].stats.originations
    started = mesh.now
    while mesh.routers[a].next_hop(address(4)) == b:
        assert mesh.now - started < 10.0, "the route did not move within 10 s"
        mesh.sample_rtt(a, b, 0.060)
        mesh.sample_rtt(b, a, 0.060)
        mesh.run(0.5)
    assert mesh.routers[a].next_hop(address(4)) == c
    assert mesh.routers[a].stats.originations > before
    print(f"route moved {mesh.now - started:.1f} s after the RTT tripled")


def test_originations_are_rate_limited_with_backoff() -> None:
    config = RoutingConfig(min_origination_interval=1.0, max_origination_interval=32.0)
    r = router(0, neighbors=(1,), config=config)  # originated at 0
    times = [0.0]
    now = 0.0
    for step in range(1, 100):  # another link goes up or down every 0.1 s for 10 s
        now = step / 10
        if step % 2:
            r.neighbor_up(rid(2), now)
        else:
            r.neighbor_down(rid(2), now)
        if now >= r.next_timer_deadline():
            before = r.sequence
            r.handle_timer(now)
            if r.sequence != before:
                times.append(now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) <= 4, times  # 99 changes, at most 4 originations
    assert all(gap >= hold - 1e-9 for gap, hold in zip(gaps, (1.0, 2.0, 4.0), strict=False)), gaps
    # The link settles up (step 99): that state is announced within the (doubled) hold.
    deadline = r.next_timer_deadline()
    assert deadline <= now + 8.0
    r.handle_timer(deadline)
    sent = sent_announcements(r.messages_to_send(deadline))[rid(1)]
    assert {neighbor for neighbor, _cost in sent[-1].links} == {rid(1), rid(2)}


def test_a_link_restored_after_minutes_of_cost_changes_is_announced_within_the_minimum_hold() -> (
    None
):
    """Cost changes back off to max_origination_interval; a topology change does not wait for
    that hold: the restored link, and its real cost from the first RTT sample, go out within
    min_origination_interval (a restored link announced 30 s late was seen in the mesh scenario)."""
    config = RoutingConfig(min_origination_interval=1.0, max_origination_interval=32.0)
    r = router(0, neighbors=(1,), config=config)
    r.neighbor_up(rid(2), 0.0)
    r.observe_rtt(rid(2), 0.001, 0.0)
    now = 0.0
    for step in range(1, 3000):  # 5 minutes of an RTT swinging 1 ms <-> 200 ms every 2 s
        now = step / 10
        r.observe_rtt(rid(1), 0.001 if (step // 20) % 2 else 0.200, now)
        if now >= r.next_timer_deadline():
            r.handle_timer(now)
            r.messages_to_send(now)
    assert r._own.throttle.earliest() > now + 16.0  # the precondition: cost changes held back
    r.neighbor_down(rid(2), now)
    down = now
    deadline = r.next_timer_deadline()
    assert deadline <= down + 1.0, deadline - down
    r.handle_timer(deadline)
    r.messages_to_send(deadline)
    now = deadline + 0.2
    r.neighbor_up(rid(2), now)  # restored; its first sample comes 50 ms later
    r.handle_timer(now)
    r.observe_rtt(rid(2), 0.001, now + 0.05)
    restored = now
    announced: list[tuple[float, dict[bytes, int]]] = []
    while now < restored + 10.0:
        now = max(now + 0.01, min(r.next_timer_deadline(), restored + 10.0))
        r.handle_timer(now)
        for sent in sent_announcements(r.messages_to_send(now)).get(rid(1), []):
            announced.append((now, dict(sent.links)))
    real_cost = cost_for_rtt(0.001, config)
    when = next(t for t, links in announced if links.get(rid(2)) == real_cost)
    assert when - restored <= 2.0, when - restored  # the hold since the link went down: 1 s
    print(
        f"\nrestored link announced with its measured cost {when - restored:.2f} s after it came up"
    )
