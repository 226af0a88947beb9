"""The fair-share rule for a destination's stream slots and the relay's buffer budget (pure
logic; tests/integration/test_hardening_streams.py shows them in a real relay)."""

from __future__ import annotations

from altmesh.relay.stream_budget import BufferBudget, StreamShares


class Route:
    def __init__(self, name: str) -> None:
        self.name = name


def fill(shares: StreamShares[str, Route], source: str, n: int) -> list[Route]:
    routes = [Route(f"{source}{i}") for i in range(n)]
    for route in routes:
        shares.added(route, source, "service")
    return routes


def test_while_a_destination_has_free_slots_any_source_may_take_them() -> None:
    shares: StreamShares[str, Route] = StreamShares()
    fill(shares, "attacker", 1000)
    admission = shares.admit("attacker", "service", slots=1024, free=24)
    assert admission.allowed and admission.preempt is None


def test_a_full_destination_gives_a_source_below_its_share_the_oldest_idle_slot_of_a_hog() -> None:
    shares: StreamShares[str, Route] = StreamShares()
    routes = fill(shares, "attacker", 1024)
    shares.carried(routes[0], 100)  # the attacker's oldest stream carried bytes: not idle
    admission = shares.admit("client", "service", slots=1024, free=0)
    assert admission.allowed
    assert admission.preempt is routes[1]
    assert admission.fair_share == 512


def test_a_source_at_its_share_of_a_full_destination_is_refused() -> None:
    shares: StreamShares[str, Route] = StreamShares()
    fill(shares, "attacker", 512)
    fill(shares, "client", 512)
    assert not shares.admit("attacker", "service", slots=1024, free=0).allowed
    assert not shares.admit("client", "service", slots=1024, free=0).allowed
    # a third source still gets a slot: shares are now 1024 // 3
    third = shares.admit("third", "service", slots=1024, free=0)
    assert third.allowed and third.preempt is not None and third.fair_share == 341


def test_every_one_of_many_sources_keeps_at_least_its_share() -> None:
    shares: StreamShares[str, Route] = StreamShares()
    slots = 1024
    fill(shares, "a", slots)  # "a" came first and took everything
    for _round in range(slots):
        for name in ("b", "c", "d"):
            free = slots - len(shares)
            admission = shares.admit(name, "service", slots, free)
            if not admission.allowed:
                continue
            if admission.preempt is not None:
                shares.removed(admission.preempt)
            fill(shares, name, 1)
    counts = {name: shares.held(name, "service") for name in "abcd"}
    assert all(count >= slots // 4 for count in counts.values()), counts
    assert len(shares) == slots


def test_the_buffer_budget_sheds_the_largest_holders_until_it_is_under_budget() -> None:
    budget = BufferBudget(max_buffered_bytes=1000)
    waiting = {"big": 900, "small": 300}
    assert budget.add(900) and not budget.add(300)
    shed: list[str] = []

    def largest() -> str | None:
        return max(waiting, key=waiting.__getitem__) if waiting else None

    def reset(name: object) -> None:
        assert isinstance(name, str)
        shed.append(name)
        budget.remove(waiting.pop(name))

    assert budget.shed(largest, reset) == 1
    assert shed == ["big"] and budget.buffered == 300 and budget.peak == 1200
