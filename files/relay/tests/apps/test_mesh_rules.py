"""The mesh's rules that both relays of a link apply on their own: who dials, and which of two
links between them is kept. Each relay decides from its own view; both must agree."""

from __future__ import annotations

import itertools

from altmesh.protocol import StaticKeyPair
from altmesh.relay.mesh import dials_first, newer_link_wins
from hypothesis import given
from hypothesis import strategies as st

keys = st.binary(min_size=32, max_size=32)


@given(keys, keys)
def test_of_two_relays_exactly_one_dials(a: bytes, b: bytes) -> None:
    if a != b:
        assert dials_first(a, b) != dials_first(b, a)


def kept(side_dials: bool, arrivals: list[str], dialer: dict[str, str], me: str) -> str:
    """The link a relay keeps after links arrive in `arrivals` order (names), as it sees them."""
    current = arrivals[0]
    for new in arrivals[1:]:
        if newer_link_wins(dialer[current] == me, dialer[new] == me, side_dials):
            current = new
    return current


def test_two_links_dialled_by_each_side_resolve_to_the_same_one_in_any_order() -> None:
    a, b = sorted(StaticKeyPair.generate().public for _ in range(2))
    dialer = {"from_a": "a", "from_b": "b"}
    outcomes = set()
    for order_a, order_b in itertools.product(
        itertools.permutations(dialer), itertools.permutations(dialer)
    ):
        at_a = kept(dials_first(a, b), list(order_a), dialer, "a")
        at_b = kept(dials_first(b, a), list(order_b), dialer, "b")
        assert at_a == at_b, (order_a, order_b)
        outcomes.add(at_a)
    assert outcomes == {"from_a"}  # the lower key's link


def test_a_reconnect_replaces_the_old_link_its_dialler_gave_up() -> None:
    """The dialler only dials when it has no link: it holds the new link alone; the other side
    still holds the old one when the new one arrives and must keep the new one."""
    a, b = sorted(StaticKeyPair.generate().public for _ in range(2))
    for dialler, other, other_key, dialler_key in (("a", "b", b, a), ("b", "a", a, b)):
        dialer = {"old": dialler, "new": dialler}
        assert kept(dials_first(other_key, dialler_key), ["old", "new"], dialer, other) == "new"
