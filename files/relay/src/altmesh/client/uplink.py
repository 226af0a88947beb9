"""The node's link to the network: find relays, measure them, join the best, watch it, fail over.

- **Candidates**: the configured `[[relays]]` (the bootstrap) and, with `[dns]` and
  `client.dns_discovery`, the network's DNS-SD relay set, read again every
  `client.dns_refresh_seconds` (`altmesh.client.candidates`); after an error, or an empty set
  (a network still being built), after at most 30 s or EMPTY_SET_RETRY_SECONDS; and at once
  when the node loses its relay (at most every LOSS_REFRESH_MIN_SECONDS), so that a relay added
  since the last read is there to fail over to.
- **Measuring**: a probe is a short link to a candidate, flagged as a probe in its handshake
  (HANDSHAKE_FLAG_PROBE: the relay answers its PINGs but routes nothing to this node through it,
  so probing another relay never pulls the node's streams there): connect, the link handshake
  (its time is recorded), then PINGs; the lowest round trip is the sample. At start every
  candidate is probed at once and the best measured is joined with a link of its own; after that
  the other candidates
  are probed every `client.candidate_probe_seconds` and the current relay is measured by the
  PINGs on its link (`client.probe_interval_seconds`).
- **Choosing** is `altmesh.client.selection` (pure): the best by RTT and SRV weight, moving only
  when another relay is clearly better for a sustained time. A move is make-before-break: the new
  link comes up first, new streams use it, and the old link stays until its streams end.
- **Failover**: a link that closes, or on which nothing was heard for `client.dead_after_seconds`
  (PINGs every `client.probe_interval_seconds` keep a live link talking), is given up: its
  streams are reset (the local sockets see a reset, never an end of file), the relay waits out a
  backoff, and the next best relay is joined at once.
- **A relay that refuses the handshake** (it closes the connection before answering: wrong
  network name, wrong relay key, or its policy does not allow this node) is reported once per
  relay at WARNING, with what is likely wrong, and backs off like any failed relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from altmesh.client.candidates import RelayCandidate, configured_candidates, merge_candidates
from altmesh.client.dnssec import AltResolver, ResolveError
from altmesh.client.selection import Choice, RelaySelector, SelectionPolicy
from altmesh.config import Config, HostPort
from altmesh.keyfile import encode_public_key
from altmesh.net.link import LinkTransport
from altmesh.net.stream import E2EStream
from altmesh.protocol import LinkConnection, LinkNotEstablished

if TYPE_CHECKING:
    from altmesh.client.node import ClientNode

log = logging.getLogger("altmesh.client")

# One endpoint gets this long for TCP connect and link handshake together (at most the link's
# own handshake timeout): a relay that accepts TCP but does not answer is given up before then.
CONNECT_TIMEOUT = 5.0
# At start: how long the node waits for the first DNS-SD answer, then for the first probes,
# before it joins the best relay measured so far (probes still under way report later).
FIRST_DISCOVERY_WAIT = 1.0
# An empty DNS-SD relay set is read again after this long (or dns_refresh_seconds if shorter).
EMPTY_SET_RETRY_SECONDS = 10.0
# A lost relay makes the node read the relay set again at once (a relay added since the last read
# may be the one to move to), but not more often than this.
LOSS_REFRESH_MIN_SECONDS = 5.0
FIRST_PROBE_WAIT = 2.0
PROBE_PINGS = 3
PROBE_PING_TIMEOUT = 2.0
PROBES_AT_ONCE = 4
# How often the link to the current relay is checked for silence (PINGs go every
# probe_interval_seconds; the check runs at least this often, so a dead relay is noticed within
# dead_after_seconds plus this).
WATCH_TICK = 0.25
# A SRV-weighted score must also be this much lower (seconds) to count as clearly better: RTT
# differences below it are noise on a LAN.
SWITCH_MIN_GAIN = 0.005
EVENTS_KEPT = 50


class NoRelayLink(ConnectionError):
    """No link to a relay is up, and none came up within client.link_wait_seconds."""


@dataclass
class ClientLinkState:
    """What the node keeps per link to a relay: the relay, the streams the link carries, and
    `lost`, set when the link is gone."""

    relay_key: bytes
    streams: dict[int, E2EStream] = field(default_factory=dict)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    lost_reason: str = ""
    rtts: list[float] = field(default_factory=list)  # PONGs of a probe
    pong: asyncio.Event = field(default_factory=asyncio.Event)
    joined: bool = False  # the node's link (now or before), not only a probe


ClientLink = LinkTransport[ClientLinkState]


@dataclass(frozen=True)
class ConnectFailure:
    kind: str  # "unreachable", "silent", "refused"
    endpoint: HostPort | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint is not None else ""
        return f"{where}{self.detail}"


@dataclass(frozen=True)
class Connected:
    link: ClientLink
    endpoint: HostPort
    seconds: float  # TCP connect and link handshake


def selection_policy(config: Config) -> SelectionPolicy:
    client = config.client
    assert client is not None
    return SelectionPolicy(
        switch_margin=client.switch_margin,
        switch_min_gain=SWITCH_MIN_GAIN,
        switch_after=client.switch_after_seconds,
        retry_min=client.reconnect_min_seconds,
        retry_max=client.reconnect_max_seconds,
    )


class Uplink:
    """Keeps the node's link to the best relay (see the module's docstring)."""

    def __init__(
        self,
        node: ClientNode,
        resolver: AltResolver | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        config = node.config
        client = config.client
        assert client is not None
        self.node = node
        self.client = client
        self.clock = clock
        self.rng = rng or random.Random()
        self.resolver = resolver if client.dns_discovery else None
        self.selector = RelaySelector(selection_policy(config), self.rng)
        self.configured = configured_candidates(config.relays)
        self.selector.update_candidates(self.configured)
        self.link: ClientLink | None = None
        self.endpoint: HostPort | None = None
        self.state = "connecting"  # "connecting", "established" or "down" (all relays failed)
        self.connected_since: float | None = None  # wall clock, for status
        self.reconnects = 0
        self.rtt: float | None = None
        self.draining: set[ClientLink] = set()
        self.discovery: dict[str, Any] = {
            "enabled": self.resolver is not None,
            "relays": 0,
            "skipped": [],
            "error": None,
            "updated": None,
        }
        self.history: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._changed = asyncio.Event()  # replaced at every change of state or link
        self._candidates_changed = asyncio.Event()  # replaced at every new candidate list
        self._candidates_version = 0
        self._refusals_reported: set[bytes] = set()
        self._failures_reported: dict[bytes, str] = {}  # a relay's last failure logged at INFO
        self._probing: set[bytes] = set()
        self._probe_slots = asyncio.Semaphore(PROBES_AT_ONCE)
        self._first_discovery = asyncio.Event()
        self._refresh_now = asyncio.Event()  # read the relay set now (a relay was lost)

    # ------------------------------------------------------------------ for the node

    @property
    def relay(self) -> RelayCandidate | None:
        key = self.selector.current
        if key is None or self.link is None:
            return None
        return self.selector.state(key).candidate

    async def wait_for_link(self) -> ClientLink:
        """The link new streams go on; NoRelayLink at once when every relay failed and waits
        out its backoff, or when none comes up within client.link_wait_seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.client.link_wait_seconds
        while True:
            link = self.link
            if link is not None and not link.closed and link.conn.established:
                return link
            if self.state == "down":
                raise NoRelayLink(f"no relay link: {self._down_reason()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoRelayLink(
                    f"no relay link came up within {self.client.link_wait_seconds:g} s"
                )
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def pong(self, link: ClientLink, rtt: float) -> None:
        link.app.rtts.append(rtt)
        link.app.pong.set()
        if link is self.link:
            self.rtt = rtt
            self.selector.record_rtt(link.app.relay_key, rtt, self.clock())

    def link_lost(self, link: ClientLink, reason: str) -> None:
        link.app.lost_reason = reason
        link.app.lost.set()
        self.draining.discard(link)
        if link is self.link:
            self.link = None
            self._set_state("connecting")

    def streams_changed(self, link: ClientLink) -> None:
        """A stream of `link` ended: a draining link with none left is closed."""
        if link in self.draining and not link.app.streams:
            self.draining.discard(link)
            link.close("moved to another relay" if link.app.joined else "probe done")

    def status(self) -> dict[str, Any]:
        now = self.clock()
        relay = self.relay
        return {
            "link_state": self.state,
            "relay": str(self.endpoint) if relay is not None and self.endpoint else None,
            "relay_name": relay.name if relay is not None else None,
            "relay_key": relay.key_b64 if relay is not None else None,
            "rtt_ms": round(self.rtt * 1000, 3) if self.rtt is not None else None,
            "chosen_because": self.selector.current_reason if relay is not None else None,
            "connected_since": self.connected_since,
            "reconnects": self.reconnects,
            "candidates": self.selector.snapshot(now),
            "draining_links": len(self.draining),
            "discovery": dict(self.discovery),
            "relay_events": list(self.history),
        }

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        tasks = []
        if self.resolver is not None:
            tasks.append(asyncio.create_task(self._discovery_loop(self.resolver)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_discovery.wait(), FIRST_DISCOVERY_WAIT)
        try:
            first = await self._first_probes()
            tasks.append(asyncio.create_task(self._probe_loop()))
            await self._keep_linked(first)
        finally:
            for task in tasks:
                task.cancel()
            for link in [self.link, *self.draining]:
                if link is not None:
                    link.close("client stopping")

    async def _keep_linked(self, first: tuple[Choice, Connected] | None) -> None:
        avoid: bytes | None = None
        why = ""
        while True:
            if first is not None:
                choice, connected = first
                first = None
            else:
                now = self.clock()
                chosen = self.selector.choose(now, avoid=avoid)
                if chosen is None:
                    self._set_state("down")
                    await self._wait_for_retry(now)
                    continue
                choice = chosen
                self._set_state("connecting")
                result = await self._connect(choice.candidate)
                if isinstance(result, ConnectFailure):
                    self._failed(choice.candidate, result)
                    avoid = None
                    continue
                connected = result
            self._adopt(choice, connected, why)
            link: ClientLink | None = connected.link
            while link is not None:  # a move gives the next link to watch
                link, avoid, why = await self._watch(link)

    async def _wait_for_retry(self, now: float) -> None:
        retry = self.selector.next_retry(now)
        delay = max(0.05, (retry - now) if retry is not None else self.client.reconnect_max_seconds)
        log.debug("every relay failed; next attempt in %.2f s", delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._candidates_changed.wait(), delay)

    def _adopt(self, choice: Choice, connected: Connected, why: str) -> None:
        candidate = choice.candidate
        now = self.clock()
        self.selector.record_success(candidate.key)
        self.selector.record_handshake(candidate.key, connected.seconds)
        reason = f"{why}; {choice.reason}" if why else choice.reason
        self.selector.joined(candidate.key, now, reason)
        if self.link is not None and not self.link.closed:
            self.draining.add(self.link)  # make-before-break: its streams finish there
            self.streams_changed(self.link)
        if self.connected_since is not None:
            self.reconnects += 1
        self.link = connected.link
        self.link.app.joined = True
        self.endpoint = connected.endpoint
        self.connected_since = time.time()
        self._refusals_reported.discard(candidate.key)
        self._failures_reported.pop(candidate.key, None)
        self._set_state("established")
        self._note("joined", candidate.name, reason)
        log.info(
            "link to relay %s (%s) established: %s", candidate.name, connected.endpoint, reason
        )
        self._ping(connected.link)

    async def _watch(self, link: ClientLink) -> tuple[ClientLink | None, bytes | None, str]:
        """Until the link is lost, goes silent, or a better relay is joined: returns the link
        joined instead (a move), or None with the relay to avoid next and why."""
        key = link.app.relay_key
        name = self.selector.state(key).candidate.name
        heard = link.conn.stats.messages_in
        heard_at = last_ping = self.clock()
        tick = min(WATCH_TICK, self.client.probe_interval_seconds)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.app.lost.wait(), tick)
            now = self.clock()
            if link.closed:
                reason = link.app.lost_reason or "link closed"
                self.selector.record_failure(key, now, f"link lost: {reason}")
                self.selector.left()
                self._refresh_now.set()
                self._note("lost", name, reason)
                log.warning("link to relay %s lost (%s); failing over", name, reason)
                return None, key, f"failover: {name} was lost ({reason})"
            if link.conn.stats.messages_in != heard:
                heard, heard_at = link.conn.stats.messages_in, now
            silent = now - heard_at
            if silent >= self.client.dead_after_seconds:
                reason = f"nothing heard for {silent:.1f} s"
                link.abort(f"relay silent: {reason}")  # resets its streams
                self.selector.record_failure(key, now, f"silent: {reason}")
                self.selector.left()
                self._refresh_now.set()
                self._note("silent", name, reason)
                log.warning("relay %s went silent (%s); failing over", name, reason)
                return None, key, f"failover: {name} went silent ({reason})"
            if now - last_ping >= self.client.probe_interval_seconds:
                last_ping = now
                self._ping(link)
            for draining in list(self.draining):
                self.streams_changed(draining)
            choice = self.selector.consider_switch(now)
            if choice is not None:
                moved = await self._switch(choice)
                if moved is not None:
                    return moved, None, ""

    async def _switch(self, choice: Choice) -> ClientLink | None:
        """Make-before-break: join the better relay (its link is returned); the old link
        drains."""
        candidate = choice.candidate
        result = await self._connect(candidate)
        if isinstance(result, ConnectFailure):
            self._failed(candidate, result)
            return None
        current = self.selector.current
        old = self.selector.state(current).candidate.name if current is not None else "?"
        self._adopt(choice, result, f"moved from {old}")
        return result.link

    def _ping(self, link: ClientLink) -> None:
        if link.closed:
            return
        with contextlib.suppress(LinkNotEstablished):  # the link is ending: link_lost follows
            link.conn.ping(time.monotonic())
            link.kick()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
        self._changed.set()
        self._changed = asyncio.Event()

    def _down_reason(self) -> str:
        failures = [
            f"{row['name']}: {row['state']}" for row in self.selector.snapshot(self.clock())
        ]
        return "; ".join(failures) or "no relay is configured"

    def _note(self, what: str, relay: str, detail: str) -> None:
        self.history.append({"time": time.time(), "event": what, "relay": relay, "detail": detail})

    # ------------------------------------------------------------------ connecting

    async def _connect(
        self, candidate: RelayCandidate, *, probe: bool = False
    ) -> Connected | ConnectFailure:
        """A link to the candidate, trying its endpoints in order. `probe`: a link that only
        measures (the relay does not attach this node through it)."""
        failures: list[ConnectFailure] = []
        for endpoint in candidate.endpoints:
            result = await self._connect_endpoint(candidate, endpoint, probe=probe)
            if isinstance(result, Connected):
                return result
            failures.append(result)
        # The most telling failure: a refusal says more than silence, silence more than no TCP.
        order = {"refused": 0, "silent": 1, "unreachable": 2}
        if not failures:
            return ConnectFailure("unreachable", None, "the relay has no endpoint")
        return min(failures, key=lambda failure: order.get(failure.kind, 3))

    async def _connect_endpoint(
        self, candidate: RelayCandidate, endpoint: HostPort, *, probe: bool = False
    ) -> Connected | ConnectFailure:
        node = self.node
        loop = asyncio.get_running_loop()
        conn = LinkConnection.initiator(
            node.link_cfg, node.keys[0], candidate.key, timestamps=node.timestamps, probe=probe
        )
        state = ClientLinkState(candidate.key)
        timeout = min(CONNECT_TIMEOUT, node.link_cfg.handshake_timeout)
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                _transport, link = await loop.create_connection(
                    lambda: LinkTransport(conn, node, state), endpoint.host, endpoint.port
                )
        except (OSError, TimeoutError) as err:
            text = getattr(err, "strerror", None) or str(err) or "no TCP connection within"
            if isinstance(err, TimeoutError):
                text = f"no TCP connection within {timeout:g} s"
            return ConnectFailure("unreachable", endpoint, text)
        try:
            remaining = max(0.1, timeout - (time.monotonic() - started))
            await asyncio.wait_for(asyncio.shield(link.established_waiter), remaining)
        except TimeoutError:
            link.abort("no handshake answer")
            return ConnectFailure(
                "silent",
                endpoint,
                f"accepted TCP but did not answer the handshake in {timeout:g} s",
            )
        except ConnectionError as err:
            return ConnectFailure("refused", endpoint, f"closed the connection ({err})")
        if link.closed or not link.conn.established:
            return ConnectFailure("refused", endpoint, link.app.lost_reason or "link closed")
        return Connected(link, endpoint, time.monotonic() - started)

    def _failed(self, candidate: RelayCandidate, failure: ConnectFailure) -> None:
        delay = self.selector.record_failure(candidate.key, self.clock(), failure.kind)
        if failure.kind == "refused":
            self._report_refusal(candidate, failure, delay)
        elif self._failures_reported.get(candidate.key) == failure.kind:
            log.debug("relay %s: %s again; retrying it in %.1f s", candidate.name, failure, delay)
        else:
            self._failures_reported[candidate.key] = failure.kind
            log.info(
                "relay %s: %s (%s); retrying it in %.1f s",
                candidate.name,
                failure,
                failure.kind,
                delay,
            )
        self._note(failure.kind, candidate.name, str(failure))

    def _report_refusal(
        self, candidate: RelayCandidate, failure: ConnectFailure, delay: float
    ) -> None:
        if candidate.key in self._refusals_reported:
            log.debug(
                "relay %s refused the handshake again; retrying in %.1f s", candidate.name, delay
            )
            return
        self._refusals_reported.add(candidate.key)
        node = self.node
        log.warning(
            "relay %s closed the connection during the link handshake: it does not accept "
            "this node. Likely: network.name %r is not the relay's network name, the relay's "
            "public key is not %s (check [[relays]] public_key), or the relay's policy does not "
            "allow this node's key %s. Retrying with backoff (next in %.1f s); logged once per "
            "relay.",
            _where(candidate, failure.endpoint),
            node.config.network.name,
            candidate.key_b64,
            encode_public_key(node.keys[0].public),
            delay,
        )

    # ------------------------------------------------------------------ measuring

    async def _probe(self, candidate: RelayCandidate) -> None:
        """Measure one candidate: handshake time and the lowest of a few PING round trips, on
        a probe link (HANDSHAKE_FLAG_PROBE: the relay does not attach this node through it, so
        streams to this node keep going to the relay it is attached to). The link is closed
        afterwards."""
        if candidate.key in self._probing:
            return
        self._probing.add(candidate.key)
        try:
            async with self._probe_slots:
                result = await self._connect(candidate, probe=True)
            if isinstance(result, ConnectFailure):
                self._failed(candidate, result)
                return
            link = result.link
            self.selector.record_handshake(candidate.key, result.seconds)
            for _ in range(PROBE_PINGS):
                self._ping(link)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_PING_TIMEOUT):
                    while len(link.app.rtts) < PROBE_PINGS and not link.closed:
                        link.app.pong.clear()
                        await link.app.pong.wait()
            if link.app.rtts:
                self.selector.record_rtt(candidate.key, min(link.app.rtts), self.clock())
                self.selector.record_success(candidate.key)
            elif not link.closed:
                self._failed(
                    candidate, ConnectFailure("silent", result.endpoint, "no answer to PING")
                )
            self.draining.add(link)  # closed now (a probe link carries no stream)
            self.streams_changed(link)
        finally:
            self._probing.discard(candidate.key)

    async def _first_probes(self) -> tuple[Choice, Connected] | None:
        """Probe every candidate at once; join the best measured within FIRST_PROBE_WAIT (a
        new link: probe links never carry the node's streams). Probes still under way report
        when done."""
        candidates = self.selector.candidates
        if not candidates:
            return None
        probes = [self.node.spawn(self._probe(candidate)) for candidate in candidates]
        await asyncio.wait(probes, timeout=FIRST_PROBE_WAIT)
        choice = self.selector.choose(self.clock())
        if choice is None:
            return None
        self._set_state("connecting")
        result = await self._connect(choice.candidate)
        if isinstance(result, ConnectFailure):
            self._failed(choice.candidate, result)
            return None
        return choice, result

    async def _probe_loop(self) -> None:
        interval = self.client.candidate_probe_seconds
        version = self._candidates_version
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._candidates_changed.wait(), interval * self.rng.uniform(0.8, 1.2)
                )
            only_new = self._candidates_version != version  # measure the new ones now
            version = self._candidates_version
            if self.link is None:
                continue  # the node is (re)joining: that measures the relays it tries
            now = self.clock()
            for candidate in self.selector.candidates:
                state = self.selector.state(candidate.key)
                if candidate.key == self.selector.current or state.retry_at > now:
                    continue
                if only_new and state.samples:
                    continue
                self.node.spawn(self._probe(candidate))

    # ------------------------------------------------------------------ discovery

    async def _discovery_loop(self, resolver: AltResolver) -> None:
        refresh = self.client.dns_refresh_seconds
        while True:
            delay = refresh
            try:
                relay_set = await resolver.resolve_relays()
            except ResolveError as err:
                self.discovery["error"] = f"{err} ({err.kind})"
                log.warning("relay discovery: %s (%s); keeping the known relays", err, err.kind)
                delay = min(refresh, 30.0)
            else:
                self.discovery.update(
                    error=None,
                    relays=len(relay_set.relays),
                    skipped=[f"{s.instance}: {s.kind}" for s in relay_set.skipped],
                    updated=time.time(),
                )
                if not relay_set.relays:  # an empty set is not authenticated: no news, and
                    # likely a network being built (or a resolver's cached "no such name"):
                    # ask again soon rather than after a whole refresh interval
                    delay = min(refresh, EMPTY_SET_RETRY_SECONDS)
                else:
                    self.selector.update_candidates(
                        merge_candidates(
                            self.configured, relay_set.relays, self.client.max_candidates
                        )
                    )
                    self._candidates_version += 1
                    self._candidates_changed.set()
                    self._candidates_changed = asyncio.Event()
            self._first_discovery.set()
            read_at = self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), delay * self.rng.uniform(0.9, 1.1))
            if self._refresh_now.is_set():  # a relay was lost: read now, if not just read
                early = LOSS_REFRESH_MIN_SECONDS - (self.clock() - read_at)
                if early > 0:
                    await asyncio.sleep(early)
                self._refresh_now.clear()
                log.debug("relay discovery: reading the relay set again (a relay was lost)")


def _where(candidate: RelayCandidate, endpoint: HostPort | None) -> str:
    """`relay1 (192.0.2.7:7400)`, or just the address for a relay named by it."""
    if endpoint is None or candidate.name == str(endpoint):
        return candidate.name
    return f"{candidate.name} ({endpoint})"
