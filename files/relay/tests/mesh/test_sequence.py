"""Sequence numbers survive a restart: the owner persists `sequence` and passes it + 1; and, as a
second line of defence, an announcement in our name with a higher number makes us jump above it
and re-originate (OSPF's rule), unless it is too far ahead to be anything but a forgery."""

from __future__ import annotations

from altmesh.mesh import AnnouncementsRejected, LinkStateRouter, SequenceJumped
from altmesh.mesh.constants import MAX_SEQUENCE_JUMP
from altmesh.mesh.simulation import SimulatedMesh

from .helpers import address, announcement, payload, rid, router, sent_announcements


def _pair() -> tuple[SimulatedMesh, bytes, bytes]:
    mesh = SimulatedMesh()
    a, b = rid(0), rid(1)
    mesh.add_router(a, destinations=[address(1)])
    mesh.add_router(b, destinations=[address(2)])
    mesh.connect(a, b, 0.01)
    mesh.run_until_quiet()
    for _ in range(5):  # a few originations, so that A's number is well above 1
        mesh.set_destinations(a, [address(1), address(10 + _)])
        mesh.run(40.0)
    return mesh, a, b


def _restart(mesh: SimulatedMesh, a: bytes, b: bytes, first_sequence: int) -> None:
    mesh.remove_router(a)
    mesh.run(5.0)
    mesh.add_router(a, first_sequence=first_sequence, destinations=[address(3)])
    mesh.connect(a, b, 0.01)
    mesh.run_until_quiet()


def test_each_origination_takes_a_new_sequence_number() -> None:
    mesh, a, _b = _pair()
    assert mesh.routers[a].sequence == mesh.routers[a].stats.originations == 7  # from 1


def test_a_restart_with_the_persisted_sequence_is_believed_at_once() -> None:
    mesh, a, b = _pair()
    persisted = mesh.routers[a].sequence
    _restart(mesh, a, b, first_sequence=persisted + 1)
    assert mesh.jumps == []
    assert mesh.routers[a].sequence > persisted
    assert mesh.routers[b].next_hop(address(3)) == a  # A's new destinations
    assert mesh.routers[b].next_hop(address(1)) is None  # and not its old ones


def test_a_restart_that_lost_its_sequence_jumps_above_its_old_announcements() -> None:
    mesh, a, b = _pair()
    old = mesh.routers[a].sequence
    _restart(mesh, a, b, first_sequence=1)
    (jump,) = mesh.jumps
    assert isinstance(jump, SequenceJumped)
    assert (jump.neighbor, jump.new_sequence) == (b, old)
    assert mesh.routers[a].sequence > old
    assert mesh.routers[b].next_hop(address(3)) == a
    assert mesh.routers[b].next_hop(address(1)) is None


def test_an_announcement_in_our_name_too_far_ahead_is_not_followed() -> None:
    r = router(0, neighbors=(1,))
    ours = r.sequence
    forged = announcement(0, ours + MAX_SEQUENCE_JUMP, links={1: 10})
    for _ in range(3):
        r.receive(rid(1), payload(forged), 1.0)
    assert r.sequence == ours
    (event,) = r.take_events()
    assert isinstance(event, AnnouncementsRejected)
    assert (event.kind, event.count, event.neighbor) == ("route_sequence_forged", 3, rid(1))


def test_a_stale_fragment_in_our_name_is_flushed_with_an_empty_one() -> None:
    r = router(0, neighbors=(1,))
    r.receive(rid(1), payload(announcement(0, 50, fragment=3, addresses=[7, 8])), 1.0)
    r.handle_timer(r.next_timer_deadline())
    (flush,) = sent_announcements(r.messages_to_send(r.next_timer_deadline()))[rid(1)]
    assert (flush.origin, flush.fragment, flush.addresses) == (rid(0), 3, ())
    assert flush.sequence == r.sequence == 51


def test_our_sequence_number_with_other_contents_makes_us_reoriginate() -> None:
    r = router(0, neighbors=(1,))
    (ours,) = [a for a in sent_announcements(_resend(r))[rid(1)] if a.fragment == 0]
    r.receive(rid(1), payload(announcement(0, ours.sequence, addresses=[99])), 5.0)
    r.handle_timer(5.0)
    (again,) = sent_announcements(r.messages_to_send(5.0))[rid(1)]
    assert again.sequence == ours.sequence + 1
    assert again.addresses == () and again.links == ours.links


def _resend(r: LinkStateRouter) -> list[tuple[bytes, bytes]]:
    """What relay 0 sends a neighbor that comes up again: its database."""
    r.neighbor_down(rid(1), 2.0)
    r.neighbor_up(rid(1), 2.0)
    return r.messages_to_send(2.0)
