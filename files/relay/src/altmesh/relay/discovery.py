"""Mesh peers from DNS: the network's relay set, read and DNSSEC-validated from the `.alt` zone.

The dashboard (or the DNS role) publishes every relay as a DNS-SD instance (docs/dashboard-dns.md,
"Relays in DNS"): `_altmesh._tcp.alt. PTR <name>._altmesh._tcp.alt.`, the instance's SRV records
(its endpoints) and TXT (`relay=<name>`, `altmesh-key=<key>`). `AltResolver.resolve_relays()`
reads and validates them; this module reads them every `dns_refresh_seconds` and gives the relays
(all but this one) to the mesh as peers, so a relay newly published in DNS is accepted and
linked by the existing relays without a change to their configs.

What DNS gave is saved in the relay's state (`StateDB.replace_mesh_peers`) and used after a
restart until DNS answers again. An answer without relays (no PTR set: not authenticated, see
resolve_relays) and a failed lookup are "no news": the relays known are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from altmesh.client.dnssec import AltResolver, RelayRecord, ResolveError
from altmesh.config import ConfigError, HostPort, parse_host_port
from altmesh.relay.mesh import PeerSpec
from altmesh.state import StateDB, StoredPeer

log = logging.getLogger("altmesh.relay.discovery")

MAX_ENDPOINTS = 16  # per relay, as for [[mesh.peers]] endpoints
# A link from a relay that is not a peer yet (published after our last refresh) asks for a
# refresh; at most one per this many seconds.
MIN_REFRESH_GAP = 2.0


def spec_from_record(record: RelayRecord) -> PeerSpec:
    """A relay of the DNS-SD set as a mesh peer: its keys, and an endpoint per validated address
    of each SRV target in the zone (or the target's name, outside it), by SRV priority."""
    endpoints: list[HostPort] = []
    for target in record.targets:
        if target.addresses:
            endpoints += [HostPort(str(address), target.port) for address in target.addresses]
        else:
            endpoints.append(HostPort(target.target, target.port))
    return PeerSpec(record.name, record.public_keys, tuple(endpoints[:MAX_ENDPOINTS]), "dns")


def spec_from_stored(peer: StoredPeer) -> PeerSpec | None:
    try:
        endpoints = tuple(parse_host_port(text, "endpoint") for text in peer.endpoints)
    except ConfigError:
        return None
    if not endpoints or not peer.public_keys:
        return None
    return PeerSpec(peer.name, peer.public_keys, endpoints, "dns")


def stored_from_spec(spec: PeerSpec) -> StoredPeer:
    return StoredPeer(spec.name, spec.public_keys, tuple(str(e) for e in spec.endpoints))


class RelayDiscovery:
    """Reads the relay set periodically; `on_change(peers)` gets every new answer."""

    def __init__(
        self,
        resolver: AltResolver,
        state: StateDB,
        *,
        own_key: bytes,
        interval: float,
        on_change: Callable[[tuple[PeerSpec, ...]], None],
    ) -> None:
        self.resolver = resolver
        self.state = state
        self.own_key = own_key
        self.interval = interval
        self.on_change = on_change
        self.peers: tuple[PeerSpec, ...] = ()
        self._wake = asyncio.Event()
        self._last_refresh = -MIN_REFRESH_GAP
        self._task: asyncio.Task[None] | None = None

    def load_saved(self) -> tuple[PeerSpec, ...]:
        """The peers DNS gave before the last restart (used until DNS answers again)."""
        saved = (spec_from_stored(peer) for peer in self.state.mesh_peers())
        self.peers = tuple(spec for spec in saved if spec is not None)
        if self.peers:
            log.info("%d mesh peers from DNS, saved before the restart", len(self.peers))
        return self.peers

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def refresh_soon(self) -> None:
        """Read the relay set again now (rate-limited), not only at the next interval."""
        if time.monotonic() - self._last_refresh >= MIN_REFRESH_GAP:
            self._wake.set()

    async def _refresh_forever(self) -> None:
        while True:
            self._wake.clear()
            self._last_refresh = time.monotonic()
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            wait = MIN_REFRESH_GAP - (time.monotonic() - self._last_refresh)
            if wait > 0:
                await asyncio.sleep(wait)

    async def refresh(self) -> None:
        try:
            answer = await self.resolver.resolve_relays()
        except ResolveError as error:
            log.warning(
                "relay set from DNS: %s (%s); keeping the %d relays known",
                error.detail,
                error.kind,
                len(self.peers),
            )
            return
        relays = [r for r in answer.relays if self.own_key not in r.public_keys]
        if not answer.relays:
            log.debug("relay set from DNS: no relays published; keeping the ones known")
            return
        peers = tuple(spec_from_record(record) for record in relays)
        if peers == self.peers:
            return
        log.info(
            "relay set from DNS: %s",
            ", ".join(sorted(spec.name for spec in peers)) or "no other relay",
        )
        self.state.replace_mesh_peers(stored_from_spec(spec) for spec in peers)
        self.peers = peers
        self.on_change(peers)
