"""Mistakes of the router's owner are RouterUsageError (never a ProtocolError, which is kept for
faults of a peer), and a malformed payload changes nothing."""

from __future__ import annotations

import pytest
from altmesh.mesh import LinkStateRouter, MalformedAnnouncement, RouterUsageError
from altmesh.protocol.errors import ProtocolError

from .helpers import announcement, payload, rid, router


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.receive(rid(7), payload(announcement(9, 1)), 1.0), "is not a neighbor"),
        (lambda r: r.neighbor_down(rid(7), 1.0), "is not a neighbor"),
        (lambda r: r.observe_rtt(rid(7), 0.01, 1.0), "is not a neighbor"),
        (lambda r: r.neighbor_up(rid(1), 1.0), "is already up"),
        (lambda r: r.neighbor_up(rid(0), 1.0), "cannot be its own neighbor"),
        (lambda r: r.neighbor_up(b"short", 1.0), "32-byte public key"),
        (lambda r: r.observe_rtt(rid(1), -1.0, 1.0), "finite number of seconds"),
        (lambda r: r.observe_rtt(rid(1), float("inf"), 1.0), "finite number of seconds"),
    ],
)
def test_a_caller_mistake_is_a_usage_error(call: object, message: str) -> None:
    r = router(0, neighbors=(1,))
    with pytest.raises(RouterUsageError, match=message) as caught:
        call(r)  # type: ignore[operator]
    assert not isinstance(caught.value, ProtocolError)


@pytest.mark.parametrize("first_sequence", [0, 2**64 - 2**32 + 1])
def test_a_first_sequence_outside_the_usable_range_is_a_usage_error(first_sequence: int) -> None:
    with pytest.raises(RouterUsageError, match="first_sequence"):
        LinkStateRouter(rid(0), now=0.0, first_sequence=first_sequence)


def test_a_malformed_payload_raises_and_changes_nothing() -> None:
    r = router(0, neighbors=(1, 2))
    good = payload(announcement(9, 1, addresses=[9]), announcement(8, 1, addresses=[8]))
    bad = good[:-1]  # the second announcement is truncated: the first is not applied either
    with pytest.raises(MalformedAnnouncement):
        r.receive(rid(1), bad, 1.0)
    assert r.stats.origins == 1
    assert r.messages_to_send(1.0) == []
    assert r.stats.malformed_payloads == 1
    r.receive(rid(1), good, 2.0)
    assert r.stats.origins == 3


def test_the_timer_deadline_is_a_finite_time_no_earlier_than_the_change_it_serves() -> None:
    r = LinkStateRouter(rid(0), now=5.0, first_sequence=1)
    r.neighbor_up(rid(1), 5.0)  # originate at once: at 5.0, not at "minus infinity"
    assert r.next_timer_deadline() == 5.0
    with pytest.raises(RouterUsageError, match="finite monotonic time"):
        r.handle_timer(float("-inf"))
