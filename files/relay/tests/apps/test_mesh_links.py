"""The peer-link manager with real links over loopback TCP, two relays' managers in one event
loop: both dialling at once ends in one link, the same on both sides; a silent link is declared
dead from the time passed in and redialled; a new peer set keeps the links of peers that remain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from altmesh.config import HostPort
from altmesh.net.link import LinkTransport
from altmesh.protocol import (
    Event,
    HandshakeComplete,
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    PongReceived,
    ProtocolError,
    StaticKeyPair,
    TimestampIssuer,
    network_prefix,
)
from altmesh.relay.link_state import RelayLink, RelayLinkState
from altmesh.relay.mesh import MeshLinks, MeshTimings, PeerSpec, dials_first

CONFIG = LinkConfig(network="testnet", prefix=network_prefix("fd12:3456:789a::/48"))


@dataclass
class LoopRelay:
    """The part of a relay the manager needs: a listener, a handler, the hooks."""

    name: str
    key: StaticKeyPair
    timings: MeshTimings
    mesh: MeshLinks = field(init=False)
    server: asyncio.AbstractServer | None = None
    port: int = 0
    established: list[RelayLink] = field(default_factory=list)
    ups: list[bytes] = field(default_factory=list)
    downs: list[bytes] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mesh = MeshLinks(
            local=self.key,
            link_config=CONFIG,
            timestamps=TimestampIssuer(time.time),
            timings=self.timings,
            hooks=self,
            make_link=lambda conn: LinkTransport(conn, self, RelayLinkState()),
        )

    async def listen(self) -> None:
        store = MemoryReplayStore()

        def accept() -> RelayLink:
            conn = LinkConnection.responder(
                CONFIG,
                [self.key],
                authorize=self.mesh.is_peer_key,
                replay_store=store,
                timestamps=TimestampIssuer(time.time),
            )
            return LinkTransport(conn, self, RelayLinkState())

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def spec(self) -> PeerSpec:
        return PeerSpec(
            self.name, (self.key.public,), (HostPort("127.0.0.1", self.port),), "config"
        )

    # LinkHandler
    def link_event(self, link: RelayLink, event: Event) -> None:
        if isinstance(event, HandshakeComplete):
            self.established.append(link)
            assert self.mesh.link_established(link)
        elif isinstance(event, PongReceived):
            self.mesh.pong(link, event.rtt)

    def link_failed(self, link: RelayLink, error: ProtocolError) -> None:
        raise AssertionError(f"{self.name}: {error.kind}")

    def link_lost(self, link: RelayLink, reason: str) -> None:
        self.mesh.link_lost(link)

    def link_writable(self, link: RelayLink) -> None:
        pass

    # MeshHooks
    def mesh_link_up(self, neighbor: bytes, link: RelayLink) -> None:
        self.ups.append(neighbor)

    def mesh_link_down(self, neighbor: bytes, link: RelayLink) -> None:
        self.downs.append(neighbor)

    def mesh_rtt(self, neighbor: bytes, rtt: float) -> None:
        self.rtts.append(rtt)

    def current(self, peer: LoopRelay) -> RelayLink | None:
        return self.mesh.link_to(peer.key.public)

    def close(self) -> None:
        self.mesh.stop()
        if self.server is not None:
            self.server.close()
        for link in self.established:
            link.abort("test over")


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def pair(answer_wait: float, dead_after: float = 60.0) -> tuple[LoopRelay, LoopRelay]:
    """Two relays, the lower key first."""
    timings = MeshTimings(
        probe_interval=30.0,  # the tests call probe() with the time they want
        dead_after=dead_after,
        reconnect_min=0.05,
        reconnect_max=0.2,
        answer_wait=answer_wait,
    )
    keys = sorted((StaticKeyPair.generate() for _ in range(2)), key=lambda k: k.public)
    return LoopRelay("low", keys[0], timings), LoopRelay("high", keys[1], timings)


def same_connection(a: RelayLink, b: RelayLink) -> bool:
    assert a.transport is not None and b.transport is not None
    return bool(
        a.transport.get_extra_info("sockname") == b.transport.get_extra_info("peername")
        and a.transport.get_extra_info("peername") == b.transport.get_extra_info("sockname")
    )


def test_both_relays_dialling_at_once_keep_one_link_the_same_on_both_sides() -> None:
    async def scenario() -> None:
        low, high = pair(answer_wait=0.0)  # the higher key does not wait: both dial at once
        try:
            await low.listen()
            await high.listen()
            low.mesh.set_peers([high.spec()])
            high.mesh.set_peers([low.spec()])
            low.mesh.start()
            high.mesh.start()
            await until(lambda: len(low.established) == 2 and len(high.established) == 2)
            await until(lambda: sum(not link.closed for link in low.established) == 1)
            await until(lambda: sum(not link.closed for link in high.established) == 1)
            kept_low, kept_high = low.current(high), high.current(low)
            assert kept_low is not None and kept_high is not None
            assert same_connection(kept_low, kept_high)
            assert kept_low.is_initiator  # the link the lower key dialled
            await asyncio.sleep(0.3)  # and it stays the only one: nobody dials again
            assert [link for link in low.established if not link.closed] == [kept_low]
            assert low.mesh.status()[0].state == "up"
        finally:
            low.close()
            high.close()

    run(scenario)


def test_only_the_lower_key_dials_while_the_other_waits_for_it() -> None:
    async def scenario() -> None:
        low, high = pair(answer_wait=5.0)
        try:
            await low.listen()
            await high.listen()
            low.mesh.set_peers([high.spec()])
            high.mesh.set_peers([low.spec()])
            high.mesh.start()
            await asyncio.sleep(0.5)
            assert high.established == []  # the higher key waits for the lower one's link
            low.mesh.start()
            await until(lambda: high.current(low) is not None)
            link = high.current(low)
            assert link is not None and not link.is_initiator
            assert dials_first(low.key.public, high.key.public)
            await until(lambda: len(low.rtts) >= 1)  # the first PING at once: an RTT sample
        finally:
            low.close()
            high.close()

    run(scenario)


def test_a_link_silent_for_dead_after_is_aborted_and_redialled() -> None:
    async def scenario() -> None:
        low, high = pair(answer_wait=5.0, dead_after=2.0)
        try:
            await low.listen()
            await high.listen()
            low.mesh.set_peers([high.spec()])
            high.mesh.set_peers([low.spec()])
            low.mesh.start()
            high.mesh.start()
            await until(lambda: low.current(high) is not None)
            first = low.current(high)
            assert first is not None
            low.mesh.probe(first.conn.last_received + 1.9)  # silent for 1.9 s: still alive
            assert not first.closed
            low.mesh.probe(first.conn.last_received + 2.1)  # 2.1 s: dead
            assert first.closed and low.downs == [high.key.public]
            await until(lambda: low.current(high) is not None and low.current(high) is not first)
            assert low.ups == [high.key.public, high.key.public]
        finally:
            low.close()
            high.close()

    run(scenario)


def test_a_new_peer_set_keeps_remaining_links_and_closes_removed_ones() -> None:
    async def scenario() -> None:
        low, high = pair(answer_wait=0.2)
        third = LoopRelay("third", StaticKeyPair.generate(), low.timings)
        relays = (low, high, third)
        try:
            for relay in relays:
                await relay.listen()
            low.mesh.set_peers([high.spec(), third.spec()])
            high.mesh.set_peers([low.spec()])
            third.mesh.set_peers([low.spec()])
            for relay in relays:
                relay.mesh.start()
            await until(lambda: low.current(high) is not None and low.current(third) is not None)
            kept = low.current(third)
            removed = low.current(high)
            assert removed is not None
            low.mesh.set_peers([third.spec()])
            assert removed.closed
            assert low.current(third) is kept and kept is not None and not kept.closed
            assert [s.peer_name for s in low.mesh.status()] == ["third"]
            assert not low.mesh.is_peer_key(high.key.public)
        finally:
            for relay in relays:
                relay.close()

    run(scenario)


@pytest.mark.parametrize("source", ["config", "dns"])
def test_a_peer_listed_twice_is_one_peer_the_first_listing_wins(source: str) -> None:
    async def scenario() -> None:
        low, high = pair(answer_wait=1.0)
        try:
            await high.listen()
            first = high.spec()
            second = PeerSpec("other-name", first.public_keys, first.endpoints, "dns")
            low.mesh.set_peers([first, second] if source == "config" else [second, first])
            names = [s.peer_name for s in low.mesh.status()]
            assert names == (["high"] if source == "config" else ["other-name"])
        finally:
            low.close()
            high.close()

    run(scenario)
