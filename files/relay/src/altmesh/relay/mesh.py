"""The relay's links to its mesh peers: one link per peer, kept up, probed, replaced when dead.

Peers are other relays, each known by its static key(s), its name and where it listens: from the
relay's `[mesh]` config and from the network's DNSSEC-validated relay set (`relay/discovery.py`);
`set_peers` replaces the whole set and keeps the link of every peer that remains.

- **Who dials.** Of two relays, the one whose (current) public key sorts lower dials; the other
  waits for its link, and dials itself only when none has come `answer_wait` seconds after the
  peer went down (the lower one may not know it yet, or cannot reach it).
- **Duplicates.** Two links between the same two relays (both dialled at once, or a reconnect
  that reaches the peer before it noticed the old link die) resolve to one, the same one on both
  sides, when the second handshake completes: of two links dialled by the same relay the newer
  wins (its dialler gave the older up); of two dialled by each side, the one the lower key
  dialled. The loser is closed ("duplicate link"); streams on it are reset, never truncated.
- **Reconnects** use exponential backoff with full jitter (`altmesh.backoff`). A link that stayed
  up STABLE_LINK_SECONDS resets the backoff (its loss is redialled at once); one that did not
  (a peer that accepts the handshake, then closes) is redialled only after the next delay.
- **Probing.** Every relay link is pinged every `probe_interval`; one with nothing received for
  `dead_after` (a peer that is stopped or black-holed keeps its socket open) is aborted as dead,
  at most DEAD_CHECK_SECONDS later (silence is checked more often than pings are sent).
  The round-trip times feed the routing engine through `MeshHooks.mesh_rtt`.

The link objects are the relay's ordinary `RelayLink`s: rekeying, flow control and streams are
the core's, exactly as on a node's link. This module decides only which links exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from altmesh.backoff import Backoff
from altmesh.config import HostPort
from altmesh.keyfile import encode_public_key
from altmesh.metrics import NodeMetrics
from altmesh.protocol import (
    LinkConfig,
    LinkConnection,
    LinkNotEstablished,
    StaticKeyPair,
    TimestampIssuer,
)
from altmesh.relay.link_state import RelayLink

log = logging.getLogger("altmesh.relay.mesh")

# The relay that does not dial first dials anyway when the peer's link has not come this long
# after the peer went down.
ANSWER_WAIT_SECONDS = 3.0
# Links are checked for silence this often (or every probe interval if that is shorter), so a
# dead link is aborted at most this long after `dead_after`, not up to a probe interval later.
DEAD_CHECK_SECONDS = 0.1
# A link that stayed up this long counts as a success: the backoff starts again from its minimum.
STABLE_LINK_SECONDS = 5.0

LinkState = Literal["up", "connecting", "down"]


@dataclass(frozen=True)
class PeerSpec:
    """A relay to keep a link to. `public_keys`: the key to dial first, then the peer's previous
    key while it rotates (both are accepted from it)."""

    name: str
    public_keys: tuple[bytes, ...]
    endpoints: tuple[HostPort, ...]
    source: Literal["config", "dns"]


@dataclass(frozen=True)
class MeshTimings:
    probe_interval: float
    dead_after: float
    reconnect_min: float
    reconnect_max: float
    answer_wait: float = ANSWER_WAIT_SECONDS


@dataclass(frozen=True)
class MeshLinkStatus:
    """One mesh peer as `Relay.mesh_link_status()` reports it (dashboard heartbeats, status)."""

    peer_name: str
    state: LinkState
    rtt_ms: float | None
    public_key: str = ""  # base64
    source: str = ""  # "config" or "dns"
    established_at: float | None = None  # wall-clock time the current link came up
    dialed_by_us: bool | None = None  # who dialled the current link


class MeshHooks(Protocol):
    """What the relay does as its peers' links come and go."""

    def mesh_link_up(self, neighbor: bytes, link: RelayLink) -> None:
        """`link` is now the link to relay `neighbor` (the key it proved)."""

    def mesh_link_down(self, neighbor: bytes, link: RelayLink) -> None:
        """`link` is no longer the link to `neighbor` (lost, dead, replaced or removed)."""

    def mesh_rtt(self, neighbor: bytes, rtt: float) -> None:
        """A round-trip time sample (seconds) of the link to `neighbor`."""


def dials_first(local: bytes, remote: bytes) -> bool:
    """Whether the relay with key `local` dials the one with key `remote` (the lower key does)."""
    return local < remote


def newer_link_wins(existing_dialed_by_us: bool, new_dialed_by_us: bool, local_dials: bool) -> bool:
    """Of two established links to one peer, whether the new one is kept (see the module doc).

    Both relays evaluate this with their own view (`dialed_by_us` flips, `local_dials` flips),
    and both keep the same link.
    """
    if existing_dialed_by_us == new_dialed_by_us:
        return True  # the dialler gave the older one up: it only dials when it has no link
    return new_dialed_by_us == local_dials  # keep the one the lower key dialled


@dataclass(eq=False)
class PeerSlot:
    """One peer and the state of the link to it."""

    spec: PeerSpec
    backoff: Backoff
    link: RelayLink | None = None
    neighbor: bytes | None = None  # the key the current link's peer proved
    dialing: bool = False
    attempts: int = 0
    retry_at: float = 0.0  # monotonic: do not dial before
    down_since: float = field(default_factory=time.monotonic)
    up_since: float = 0.0  # monotonic
    established_at: float | None = None  # wall clock
    rtt: float | None = None
    links_established: int = 0
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until `condition()` holds (re-checked at each change); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not condition():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return condition()
        return True


class MeshLinks:
    """Every peer of the relay and its link (see the module doc)."""

    def __init__(
        self,
        *,
        local: StaticKeyPair,
        link_config: LinkConfig,
        timestamps: TimestampIssuer,
        timings: MeshTimings,
        hooks: MeshHooks,
        make_link: Callable[[LinkConnection], RelayLink],
        metrics: NodeMetrics | None = None,
    ) -> None:
        """`make_link(conn)` wraps a dialled connection in the relay's LinkTransport."""
        self.metrics = metrics
        self.local = local
        self.link_config = link_config
        self.timestamps = timestamps
        self.timings = timings
        self.hooks = hooks
        self.make_link = make_link
        self._slots: list[PeerSlot] = []
        self._by_key: dict[bytes, PeerSlot] = {}
        self._by_neighbor: dict[bytes, RelayLink] = {}
        self._prober: asyncio.Task[None] | None = None
        self._running = False

    # ------------------------------------------------------------------ lifetime

    def start(self) -> None:
        self._running = True
        self._prober = asyncio.create_task(self._probe_forever())
        for slot in self._slots:
            self._start_slot(slot)

    def stop(self) -> None:
        """Stop dialling and probing (the relay closes the links itself when it drains)."""
        self._running = False
        if self._prober is not None:
            self._prober.cancel()
        for slot in self._slots:
            if slot.task is not None:
                slot.task.cancel()

    def set_local_key(self, local: StaticKeyPair) -> None:
        """The relay's static key changed (SIGHUP during a rotation): dial with the new one."""
        self.local = local

    # ------------------------------------------------------------------ the peer set

    def set_peers(self, specs: Iterable[PeerSpec]) -> None:
        """Replace the peer set: a peer that remains (any key in common) keeps its slot and link,
        a removed one's link is closed, an added one is linked."""
        own = self.local.public
        wanted = [spec for spec in specs if own not in spec.public_keys and spec.public_keys]
        kept: list[PeerSlot] = []
        by_key: dict[bytes, PeerSlot] = {}
        for spec in wanted:
            if any(key in by_key for key in spec.public_keys):
                continue  # the first spec of a key wins (config before DNS)
            slot = next((self._by_key[k] for k in spec.public_keys if k in self._by_key), None)
            if slot is None or slot in kept:
                slot = PeerSlot(
                    spec, Backoff(self.timings.reconnect_min, self.timings.reconnect_max)
                )
                if self._running:
                    self._start_slot(slot)
                if self.metrics is not None:
                    self.metrics.mesh_link_up.labels(spec.name).set(0)
                    self.metrics.mesh_link_routed.labels(spec.name).set(0)
            elif slot.spec != spec:
                log.info("mesh peer %s updated (%s)", spec.name, spec.source)
                if slot.spec.name != spec.name:
                    self._forget_metrics(slot.spec.name)
                slot.spec = spec
            kept.append(slot)
            for key in spec.public_keys:
                by_key[key] = slot
        removed = [slot for slot in self._slots if slot not in kept]
        self._slots = kept
        self._by_key = by_key
        for slot in removed:
            log.info("mesh peer %s removed", slot.spec.name)
            self._forget_metrics(slot.spec.name)
            if slot.task is not None:
                slot.task.cancel()
            link = slot.link
            if link is not None:
                self._drop(slot, link)
                link.close("no longer a mesh peer")
        for slot in kept:
            link = slot.link
            if link is not None and link.conn.remote_static not in slot.spec.public_keys:
                self._drop(slot, link)
                link.close("peer key no longer listed")
            slot.notify()

    def is_peer_key(self, public_key: bytes) -> bool:
        return public_key in self._by_key

    def peer_name(self, public_key: bytes) -> str | None:
        slot = self._by_key.get(public_key)
        return slot.spec.name if slot is not None else None

    def link_to(self, neighbor: bytes) -> RelayLink | None:
        """The established link to relay `neighbor` (the routing engine's next hop), if any."""
        link = self._by_neighbor.get(neighbor)
        return link if link is not None and not link.closed else None

    @property
    def peers(self) -> tuple[PeerSpec, ...]:
        return tuple(slot.spec for slot in self._slots)

    # ------------------------------------------------------------------ link events

    def link_established(self, link: RelayLink) -> bool:
        """A link's handshake completed: whether it is a mesh link (kept, or closed as a
        duplicate); False means the peer is a node."""
        remote = link.conn.remote_static
        assert remote is not None
        slot = self._by_key.get(remote)
        if slot is None:
            if link.is_initiator:  # we dialled a peer that was removed meanwhile
                link.app.mesh_peer = remote
                link.close("no longer a mesh peer")
                return True
            return False
        link.app.mesh_peer = remote
        current = slot.link
        if current is None or current.closed:
            self._adopt(slot, link)
            return True
        local_dials = dials_first(self.local.public, slot.spec.public_keys[0])
        if newer_link_wins(current.is_initiator, link.is_initiator, local_dials):
            log.info("mesh link to %s: a newer link replaces %s", slot.spec.name, current.peername)
            self._drop(slot, current)
            current.close("duplicate link")
            self._adopt(slot, link)
        else:
            log.info("mesh link to %s: closing the duplicate %s", slot.spec.name, link.peername)
            link.close("duplicate link")
        return True

    def link_lost(self, link: RelayLink) -> None:
        """A link of the relay is gone; if it was a peer's link, the peer is down."""
        if link.app.mesh_peer is None:
            return
        slot = self._by_key.get(link.app.mesh_peer)
        if slot is None or slot.link is not link:
            return
        now = time.monotonic()
        lived = now - slot.up_since
        self._drop(slot, link)
        if lived >= STABLE_LINK_SECONDS:
            slot.backoff.reset()
            slot.retry_at = now
        else:
            slot.retry_at = now + slot.backoff.next_delay()
        log.info(
            "mesh link to %s lost after %.1f s (retry in %.2f s)",
            slot.spec.name,
            lived,
            max(0.0, slot.retry_at - now),
        )
        slot.notify()

    def pong(self, link: RelayLink, rtt: float) -> None:
        peer = link.app.mesh_peer
        slot = self._by_key.get(peer) if peer is not None else None
        if slot is None or slot.link is not link or slot.neighbor is None:
            return
        slot.rtt = rtt
        if self.metrics is not None:
            self.metrics.mesh_link_rtt.labels(slot.spec.name).set(rtt)
        self.hooks.mesh_rtt(slot.neighbor, rtt)

    def _adopt(self, slot: PeerSlot, link: RelayLink) -> None:
        remote = link.conn.remote_static
        assert remote is not None
        slot.link = link
        slot.neighbor = remote
        slot.up_since = time.monotonic()
        slot.established_at = time.time()
        slot.links_established += 1
        slot.rtt = None
        self._by_neighbor[remote] = link
        log.info(
            "mesh link to %s up (%s %s)",
            slot.spec.name,
            "dialled" if link.is_initiator else "accepted from",
            link.peername,
        )
        if self.metrics is not None:
            self.metrics.mesh_link_up.labels(slot.spec.name).set(1)
            self.metrics.mesh_links_established.labels(slot.spec.name).inc()
        self.hooks.mesh_link_up(remote, link)
        # A first RTT sample at once, so the routing engine's cost is measured, not assumed.
        self._ping(link, time.monotonic())
        slot.notify()

    def _drop(self, slot: PeerSlot, link: RelayLink) -> None:
        """`link` stops being the slot's link (before it is closed, or after it was lost)."""
        neighbor = slot.neighbor
        slot.link = None
        slot.neighbor = None
        slot.rtt = None
        slot.down_since = time.monotonic()
        if self.metrics is not None and slot in self._slots:
            self.metrics.mesh_link_up.labels(slot.spec.name).set(0)
            self.metrics.mesh_link_routed.labels(slot.spec.name).set(0)
        if neighbor is not None:
            if self._by_neighbor.get(neighbor) is link:
                del self._by_neighbor[neighbor]
            self.hooks.mesh_link_down(neighbor, link)

    # ------------------------------------------------------------------ dialling

    def _start_slot(self, slot: PeerSlot) -> None:
        slot.task = asyncio.create_task(self._keep_linked(slot))

    async def _keep_linked(self, slot: PeerSlot) -> None:
        """Dial the peer whenever it has no link and it is this relay's turn."""
        loop = asyncio.get_running_loop()
        while True:
            await slot.wait(lambda: slot.link is None)
            wait = slot.retry_at - time.monotonic()
            if wait > 0 and await slot.wait(lambda: slot.link is not None, wait):
                continue
            if not dials_first(self.local.public, slot.spec.public_keys[0]):
                # The peer dials: give its link time to come before dialling ourselves.
                grace = slot.down_since + self.timings.answer_wait - time.monotonic()
                if grace > 0 and await slot.wait(lambda: slot.link is not None, grace):
                    continue
                if slot.link is not None:
                    continue
            if await self._dial(slot, loop):
                continue
            slot.retry_at = time.monotonic() + slot.backoff.next_delay()

    async def _dial(self, slot: PeerSlot, loop: asyncio.AbstractEventLoop) -> bool:
        """One attempt; True if it gave the peer its link."""
        spec = slot.spec
        endpoint = spec.endpoints[slot.attempts % len(spec.endpoints)]
        key = spec.public_keys[(slot.attempts // len(spec.endpoints)) % len(spec.public_keys)]
        slot.attempts += 1
        conn = LinkConnection.initiator(
            self.link_config, self.local, key, timestamps=self.timestamps
        )
        made: list[RelayLink] = []

        def protocol() -> RelayLink:
            made.append(self.make_link(conn))
            return made[0]

        slot.dialing = True
        slot.notify()
        try:
            async with asyncio.timeout(self.link_config.handshake_timeout):
                await loop.create_connection(protocol, endpoint.host, endpoint.port)
                await asyncio.shield(made[0].established_waiter)
        except (OSError, ConnectionError, TimeoutError) as error:
            if made and not made[0].closed:
                made[0].abort("dial timed out")
            log.info("mesh peer %s at %s: %s", spec.name, endpoint, error or type(error).__name__)
            return False
        finally:
            slot.dialing = False
            slot.notify()
        return slot.link is made[0]

    # ------------------------------------------------------------------ probing

    async def _probe_forever(self) -> None:
        interval = self.timings.probe_interval
        tick = min(interval, DEAD_CHECK_SECONDS)
        next_ping = time.monotonic() + interval
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now >= next_ping:
                next_ping = now + interval
                self.probe(now)
            else:
                self.abort_dead(now)

    def probe(self, now: float) -> None:
        """Ping every peer's link; abort those silent for longer than `dead_after`."""
        for link in self.abort_dead(now):
            self._ping(link, now)

    def abort_dead(self, now: float) -> list[RelayLink]:
        """Abort every peer's link silent for longer than `dead_after`; return the others."""
        alive = []
        for slot in list(self._slots):
            link = slot.link
            if link is None:
                continue
            silent = now - link.conn.last_received
            if silent > self.timings.dead_after:
                log.warning(
                    "mesh link to %s is dead: nothing received for %.1f s", slot.spec.name, silent
                )
                if self.metrics is not None:
                    self.metrics.mesh_links_dead.labels(slot.spec.name).inc()
                link.abort(f"peer silent for {silent:.1f} s")
                continue
            alive.append(link)
        return alive

    @staticmethod
    def _ping(link: RelayLink, now: float) -> None:
        try:
            link.conn.ping(now)
        except LinkNotEstablished:
            return  # the link is ending: link_lost follows
        link.kick()

    def _forget_metrics(self, name: str) -> None:
        if self.metrics is None:
            return
        for metric in (
            self.metrics.mesh_link_up,
            self.metrics.mesh_link_routed,
            self.metrics.mesh_link_rtt,
            self.metrics.mesh_links_established,
            self.metrics.mesh_links_dead,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(name)

    # ------------------------------------------------------------------ status

    def status(self) -> list[MeshLinkStatus]:
        result = []
        for slot in self._slots:
            link = slot.link
            state: LinkState = (
                "up" if link is not None else "connecting" if slot.dialing else "down"
            )
            result.append(
                MeshLinkStatus(
                    peer_name=slot.spec.name,
                    state=state,
                    rtt_ms=round(slot.rtt * 1000, 3) if link and slot.rtt is not None else None,
                    public_key=encode_public_key(slot.spec.public_keys[0]),
                    source=slot.spec.source,
                    established_at=slot.established_at if link is not None else None,
                    dialed_by_us=link.is_initiator if link is not None else None,
                )
            )
        return result

    def up_links(self) -> list[tuple[str, bytes]]:
        """(peer name, neighbor key) of every peer whose link is up."""
        return [
            (slot.spec.name, slot.neighbor)
            for slot in self._slots
            if slot.link is not None and slot.neighbor is not None
        ]

    def links_established(self, name: str) -> int:
        """How many links to the peer named `name` have come up since start (tests, metrics)."""
        return next((s.links_established for s in self._slots if s.spec.name == name), 0)
