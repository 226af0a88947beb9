"""Choosing a relay (altmesh.client.selection): RTT and SRV weight, priority, hysteresis under
jittered RTTs with simulated time, and failures waiting out their backoff."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable

from altmesh.client.candidates import (
    RelayCandidate,
    configured_candidates,
    merge_candidates,
)
from altmesh.client.dnssec import RelayRecord, RelayTarget
from altmesh.client.selection import RelaySelector, SelectionPolicy
from altmesh.config import HostPort, RelayEndpoint
from altmesh.keyfile import encode_public_key

POLICY = SelectionPolicy(switch_margin=0.3, switch_min_gain=0.005, switch_after=60.0)
PING_EVERY = 0.5  # the current relay: a ping on the link
PROBE_EVERY = 30.0  # the others: a probe link


def key(n: int) -> bytes:
    return bytes([n]) * 32


def relay(n: int, *, priority: int | None = None, weight: int | None = None) -> RelayCandidate:
    return RelayCandidate(
        key(n),
        f"relay{n}",
        (HostPort("127.0.0.1", 7400 + n),),
        priority=priority,
        weight=weight,
        discovered=priority is not None,
        configured=priority is None,
    )


def selector(*candidates: RelayCandidate, seed: int = 1) -> RelaySelector:
    chooser = RelaySelector(POLICY, random.Random(seed))
    chooser.update_candidates(candidates)
    return chooser


# ---------------------------------------------------------------------- the first choice


def test_the_first_choice_is_the_lowest_rtt() -> None:
    chooser = selector(relay(1), relay(2), relay(3))
    for n, rtt in ((1, 0.030), (2, 0.012), (3, 0.020)):
        chooser.record_rtt(key(n), rtt, 0.0)
    choice = chooser.choose(1.0)
    assert choice is not None
    assert choice.candidate.name == "relay2"
    assert "lowest score 12.00 ms" in choice.reason
    assert "of 3 measured relays" in choice.reason


def test_a_relay_with_a_lower_srv_weight_counts_as_farther() -> None:
    # relay1 is a little nearer, but the dashboard gave it a quarter of relay2's weight (load).
    chooser = selector(relay(1, priority=10, weight=25), relay(2, priority=10, weight=100))
    chooser.record_rtt(key(1), 0.010, 0.0)
    chooser.record_rtt(key(2), 0.012, 0.0)
    choice = chooser.choose(1.0)
    assert choice is not None and choice.candidate.name == "relay2"
    scores = {row["name"]: row["score_ms"] for row in chooser.snapshot(1.0)}
    assert scores == {"relay1": 17.5, "relay2": 12.0}  # 10 ms * (1 + (1 - 25/100))


def test_a_lower_srv_priority_wins_over_a_lower_rtt() -> None:
    chooser = selector(relay(1, priority=20, weight=10), relay(2, priority=10, weight=10))
    chooser.record_rtt(key(1), 0.001, 0.0)
    chooser.record_rtt(key(2), 0.050, 0.0)
    choice = chooser.choose(1.0)
    assert choice is not None and choice.candidate.name == "relay2"


def test_unmeasured_relays_are_chosen_in_configured_order_only_when_none_is_measured() -> None:
    chooser = selector(relay(1), relay(2), relay(3))
    first = chooser.choose(0.0)
    assert first is not None and first.candidate.name == "relay1"
    assert "no relay measured yet" in first.reason
    chooser.record_rtt(key(3), 0.200, 0.0)
    later = chooser.choose(0.0)
    assert later is not None and later.candidate.name == "relay3"


# ---------------------------------------------------------------------- failures


def test_a_failed_relay_waits_out_its_backoff_while_the_next_best_is_chosen() -> None:
    chooser = selector(relay(1), relay(2))
    chooser.record_rtt(key(1), 0.010, 0.0)
    chooser.record_rtt(key(2), 0.020, 0.0)
    delay = chooser.record_failure(key(1), 100.0, "went silent")
    assert POLICY.retry_min <= delay <= 2 * POLICY.retry_min  # the first window, jittered
    choice = chooser.choose(100.0)
    assert choice is not None and choice.candidate.name == "relay2"
    row = next(r for r in chooser.snapshot(100.0) if r["name"] == "relay1")
    assert row["state"].startswith("failed (went silent); retry in")
    later = chooser.choose(100.0 + delay)
    assert later is not None and later.candidate.name == "relay1"  # back, and still nearest


def test_failures_back_off_exponentially_and_a_success_forgets_them() -> None:
    chooser = selector(relay(1))
    waits = [chooser.record_failure(key(1), 0.0, "refused") for _ in range(12)]
    assert max(waits) > 8.0 and all(w <= POLICY.retry_max + POLICY.retry_min for w in waits)
    chooser.record_success(key(1))
    assert chooser.record_failure(key(1), 0.0, "refused") <= 2 * POLICY.retry_min


def test_when_every_relay_failed_nothing_is_chosen_until_the_earliest_retry() -> None:
    chooser = selector(relay(1), relay(2))
    a = chooser.record_failure(key(1), 10.0, "refused")
    b = chooser.record_failure(key(2), 10.0, "unreachable")
    assert chooser.choose(10.0) is None
    earliest = chooser.next_retry(10.0)
    assert earliest == 10.0 + min(a, b)
    assert chooser.choose(earliest) is not None


def test_failover_avoids_the_relay_that_just_failed_unless_it_is_the_only_one() -> None:
    chooser = selector(relay(1), relay(2))
    chooser.record_rtt(key(1), 0.001, 0.0)
    chooser.record_rtt(key(2), 0.100, 0.0)
    choice = chooser.choose(0.0, avoid=key(1))
    assert choice is not None and choice.candidate.name == "relay2"
    alone = selector(relay(1))
    only = alone.choose(0.0, avoid=key(1))
    assert only is not None and only.candidate.name == "relay1"


# ---------------------------------------------------------------------- hysteresis


def simulate(
    chooser: RelaySelector,
    rtt_of: Callable[[int, float], float],
    relays: list[int],
    hours: float,
) -> list[tuple[float, str]]:
    """Run the node's measurements on simulated time; return every switch (time, relay name).

    The current relay is pinged every PING_EVERY seconds, the others probed every PROBE_EVERY;
    after each measurement the node asks whether to move (as the uplink does)."""
    for n in relays:  # the start: one probe of each, then join the best
        chooser.record_rtt(key(n), rtt_of(n, 0.0), 0.0)
    first = chooser.choose(0.0)
    assert first is not None
    chooser.joined(first.candidate.key, 0.0, first.reason)
    switches: list[tuple[float, str]] = []
    steps = int(hours * 3600 / PING_EVERY)
    per_probe = int(PROBE_EVERY / PING_EVERY)
    for step in range(1, steps + 1):
        now = step * PING_EVERY
        assert chooser.current is not None
        current = chooser.current[0]
        chooser.record_rtt(key(current), rtt_of(current, now), now)
        if step % per_probe == 0:
            for n in relays:
                if n != current:
                    chooser.record_rtt(key(n), rtt_of(n, now), now)
        choice = chooser.consider_switch(now)
        if choice is not None:
            chooser.joined(choice.candidate.key, now, choice.reason)
            switches.append((now, choice.candidate.name))
    return switches


def jittered(means: dict[int, float], jitter: float, seed: int) -> Callable[[int, float], float]:
    """Each measurement: the relay's mean RTT, times a uniform factor 1 +- jitter, plus now and
    then a spike (a retransmission: 5x)."""
    rng = random.Random(seed)

    def rtt(n: int, _now: float) -> float:
        value = means[n] * rng.uniform(1 - jitter, 1 + jitter)
        if rng.random() < 0.01:
            value *= 5
        return value

    return rtt


def test_two_relays_with_close_jittered_rtts_never_make_the_choice_flap() -> None:
    for seed in range(3):
        chooser = selector(relay(1), relay(2), seed=seed)
        rtts = jittered({1: 0.020, 2: 0.022}, jitter=0.6, seed=seed)
        switches = simulate(chooser, rtts, [1, 2], hours=2)
        assert switches == [], f"seed {seed}: {switches}"


def test_three_relays_with_equal_jittered_rtts_never_make_the_choice_flap() -> None:
    for seed in range(3):
        chooser = selector(relay(1), relay(2), relay(3), seed=seed)
        rtts = jittered({1: 0.030, 2: 0.030, 3: 0.030}, jitter=0.8, seed=seed)
        assert simulate(chooser, rtts, [1, 2, 3], hours=2) == [], f"seed {seed}"


def test_a_clearly_better_relay_is_joined_once_and_only_after_it_stayed_better() -> None:
    # relay1 is nearest at the start; after 10 minutes its RTT triples for good.
    rng = random.Random(7)

    def rtt(n: int, now: float) -> float:
        base = {1: 0.010 if now < 600 else 0.060, 2: 0.025}[n]
        return base * rng.uniform(0.8, 1.2)

    chooser = selector(relay(1), relay(2))
    switches = simulate(chooser, rtt, [1, 2], hours=2)
    assert [name for _, name in switches] == ["relay2"]
    moved_at = switches[0][0]
    # Not before it was better for switch_after seconds over switch_min_samples probes.
    assert moved_at >= 600 + POLICY.switch_after
    assert moved_at <= 600 + POLICY.switch_after + (POLICY.switch_min_samples + 1) * PROBE_EVERY


def test_a_relay_that_is_better_only_in_short_bursts_is_never_joined() -> None:
    # relay2 is far better for 40 s of every 5 minutes: less than switch_after at a time.
    def rtt(n: int, now: float) -> float:
        if n == 1:
            return 0.030
        return 0.005 if 100 <= now % 300 < 140 else 0.060

    chooser = selector(relay(1), relay(2))
    assert simulate(chooser, rtt, [1, 2], hours=3) == []


def test_a_better_srv_priority_brings_the_node_back_after_switch_after() -> None:
    chooser = selector(relay(1, priority=10, weight=10), relay(2, priority=20, weight=10))
    chooser.record_failure(key(1), 0.0, "unreachable")  # relay1 is down at the start
    first = chooser.choose(0.0)
    assert first is not None and first.candidate.name == "relay2"
    chooser.joined(key(2), 0.0, first.reason)
    chooser.record_rtt(key(2), 0.010, 1.0)
    now = 100.0
    moves = []
    while now < 400.0:  # relay1 is back: probed every 30 s at 40 ms, still preferred
        chooser.record_rtt(key(1), 0.040, now)
        if (choice := chooser.consider_switch(now)) is not None:
            moves.append((now, choice.reason))
            break
        now += PROBE_EVERY
    assert moves, "never moved back to the better priority"
    at, reason = moves[0]
    assert at >= 100.0 + POLICY.switch_after
    assert "SRV priority 10" in reason


# ---------------------------------------------------------------------- candidates


def record(
    name: str, n: int, targets: list[RelayTarget], *, keys: tuple[bytes, ...] | None = None
) -> RelayRecord:
    return RelayRecord(name, f"{name}._altmesh._tcp.alt.", keys or (key(n),), tuple(targets), 300)


def target(port: int, *addresses: str, host: str = "", weight: int = 10) -> RelayTarget:
    return RelayTarget(
        10,
        weight,
        port,
        host or "r.alt",
        tuple(ipaddress.ip_address(a) for a in addresses),
        in_zone=not host,
    )


def test_a_configured_relay_found_in_dns_is_one_candidate_with_both_endpoints() -> None:
    configured = configured_candidates(
        [RelayEndpoint(HostPort("10.0.0.1", 7400), encode_public_key(key(1)))]
    )
    merged = merge_candidates(
        configured,
        [record("relay1", 1, [target(7401, "10.0.0.1", "fd00::1")]), record("relay2", 2, [])],
        limit=8,
    )
    assert [c.name for c in merged] == ["relay1"]  # relay2 has no endpoint
    only = merged[0]
    assert [str(e) for e in only.endpoints] == ["10.0.0.1:7400", "10.0.0.1:7401", "[fd00::1]:7401"]
    assert (only.priority, only.weight, only.sources) == (10, 10, "config+dns")


def test_a_target_outside_the_zone_is_reached_by_its_host_name() -> None:
    merged = merge_candidates([], [record("r9", 9, [target(7400, host="relay9.example.org")])], 8)
    assert [str(e) for e in merged[0].endpoints] == ["relay9.example.org:7400"]


def test_discovered_relays_beyond_the_limit_are_dropped_but_configured_ones_stay() -> None:
    configured = configured_candidates(
        [RelayEndpoint(HostPort(f"10.0.0.{n}", 7400), encode_public_key(key(n))) for n in (1, 2)]
    )
    records = [
        record(f"relay{n}", n, [target(7400, f"10.1.0.{n}", weight=n)]) for n in range(3, 10)
    ]
    merged = merge_candidates(configured, records, limit=4)
    # The configured two, then the heaviest discovered ones.
    assert [c.name for c in merged] == ["10.0.0.1:7400", "10.0.0.2:7400", "relay9", "relay8"]
    assert len(merge_candidates(configured, records, limit=1)) == 2


def test_a_relay_that_left_the_dns_set_is_no_longer_chosen() -> None:
    chooser = selector(relay(1), relay(2))
    chooser.record_rtt(key(2), 0.001, 0.0)
    chooser.record_rtt(key(1), 0.050, 0.0)
    chooser.update_candidates([relay(1)])
    choice = chooser.choose(1.0)
    assert choice is not None and choice.candidate.name == "relay1"
