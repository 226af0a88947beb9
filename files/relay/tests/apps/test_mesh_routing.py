"""The relay's driver of the routing engine (relay/routing.py) with the real engine, a real
SQLite state and the event loop: the sequence is saved before anything carrying it leaves, a
restarted relay continues above it, and attached nodes become announced destinations."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from altmesh import events as ev
from altmesh.mesh import Announcement, decode_payload, encode_announcement, encode_payload
from altmesh.metrics import NodeMetrics
from altmesh.protocol import StaticKeyPair, network_prefix, node_address
from altmesh.relay.routing import MeshRouting
from altmesh.state import StateDB

PREFIX = network_prefix("fd12:3456:789a::/48")


class Sent:
    """What the driver sent, each payload with the sequence saved in SQLite at that moment."""

    def __init__(self, state: StateDB) -> None:
        self.state = state
        self.payloads: list[tuple[bytes, bytes, int]] = []

    def __call__(self, neighbor: bytes, payload: bytes) -> bool:
        self.payloads.append((neighbor, payload, self.state.route_sequence()))
        return True


def routing(
    state: StateDB, sent: Sent, key: bytes, destinations: list[ipaddress.IPv6Address]
) -> MeshRouting:
    return MeshRouting(
        key,
        prefix=PREFIX,
        state=state,
        send=sent,
        destinations=lambda: destinations,
        events=ev.SecurityEventLog(None, "relay"),
        metrics=NodeMetrics(),
    )


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_every_payload_leaves_after_the_sequence_it_carries_was_saved(tmp_path: Path) -> None:
    me, peer = StaticKeyPair.generate().public, StaticKeyPair.generate().public
    node = node_address(PREFIX, StaticKeyPair.generate().public)

    async def scenario() -> list[tuple[bytes, bytes, int]]:
        state = StateDB(tmp_path)
        sent = Sent(state)
        attached: list[ipaddress.IPv6Address] = []
        driver = routing(state, sent, me, attached)
        driver.neighbor_up(peer)
        await settle()
        attached.append(node)
        driver.destinations_changed()
        await asyncio.sleep(1.2)  # past the engine's minimum origination interval
        driver.stop()
        state.close()
        return sent.payloads

    payloads = asyncio.run(scenario())
    own = [
        (announcement, saved)
        for _neighbor, payload, saved in payloads
        for announcement in decode_payload(payload)
        if announcement.origin == me
    ]
    assert own, "nothing was announced"
    assert all(announcement.sequence <= saved for announcement, saved in own)
    assert any(node in announcement.addresses for announcement, _ in own)  # the attached node


def test_a_restarted_relay_continues_above_the_sequence_it_saved(tmp_path: Path) -> None:
    me, peer = StaticKeyPair.generate().public, StaticKeyPair.generate().public

    async def run_once() -> int:
        state = StateDB(tmp_path)
        sent = Sent(state)
        driver = routing(state, sent, me, [])
        driver.neighbor_up(peer)
        await settle()
        driver.stop()
        state.close()
        return max(
            a.sequence for _n, p, _s in sent.payloads for a in decode_payload(p) if a.origin == me
        )

    first = asyncio.run(run_once())
    second = asyncio.run(run_once())
    assert second > first


def announcement(
    origin: bytes, sequence: int, links: list[tuple[bytes, int]], *addresses: ipaddress.IPv6Address
) -> bytes:
    return encode_payload(
        [
            encode_announcement(
                Announcement(origin, sequence, 3600, 0, tuple(sorted(links)), addresses)
            )
        ]
    )


def test_a_stream_path_is_known_while_routes_are_being_recomputed(tmp_path: Path) -> None:
    """Right after a neighbour's announcement changed a cost, the engine's database is newer
    than its last shortest-path run (within spf_delay): the path reported for a stream is then
    still this relay, the next hop and the destination's relay."""
    me, neighbor, far = (StaticKeyPair.generate().public for _ in range(3))
    node = node_address(PREFIX, StaticKeyPair.generate().public)

    async def scenario() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        state = StateDB(tmp_path)
        driver = routing(state, Sent(state), me, [])
        driver.neighbor_up(neighbor)
        driver.receive(neighbor, announcement(neighbor, 1, [(me, 10), (far, 10)]))
        driver.receive(neighbor, announcement(far, 1, [(neighbor, 10)], node))
        await asyncio.sleep(0.5)  # routes computed
        settled = driver.path(node)
        driver.receive(neighbor, announcement(neighbor, 2, [(me, 10), (far, 30)]))
        changing = driver.path(node)  # before the recomputation runs
        driver.stop()
        state.close()
        return settled, changing

    settled, changing = asyncio.run(scenario())
    assert settled == (me, neighbor, far)
    assert changing == (me, neighbor, far)
