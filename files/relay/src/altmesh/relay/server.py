"""The relay daemon: accepts links, authorises keys, routes streams between attached nodes.

A stream opened by node A to address X is carried to the node attached with address X (the
address is a hash of the key that node proved in its handshake). The relay copies the stream's
bytes, which are end-to-end ciphertext, from one link stream to the other, and acknowledges them
to A only once the link to X accepted them, so the receiver's flow control reaches the sender.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import signal
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from altmesh import events as ev
from altmesh.config import Config, ConfigError, load_config
from altmesh.keyfile import (
    KeyFileError,
    decode_public_key,
    encode_public_key,
    read_private_key,
)
from altmesh.metrics import NodeMetrics
from altmesh.net.link import LinkTransport
from altmesh.protocol import LinkConnection, ProtocolError, StaticKeyPair
from altmesh.protocol import events as pev
from altmesh.ratelimit import SourceRateLimiter
from altmesh.state import SqliteReplayStore, StateDB

log = logging.getLogger("altmesh.relay")

RESET_NO_ROUTE = 16
RESET_PEER_GONE = 17
CAPTURE_LIMIT = 64 * 1024 * 1024  # forwarded_capture_file stops growing here
COUNTER_SAVE_SECONDS = 30.0


@dataclass
class Policy:
    mode: str  # "open" or "allowlist"
    allowed: frozenset[bytes]

    def allows(self, public_key: bytes) -> bool:
        return self.mode == "open" or public_key in self.allowed


def load_policy(config: Config) -> Policy:
    settings = config.relay
    assert settings is not None
    keys = {decode_public_key(k) for k in settings.allowed_keys}
    if settings.allowed_keys_file is not None:
        try:
            text = settings.allowed_keys_file.read_text()
        except OSError as err:
            raise ConfigError(
                "relay.allowed_keys_file", f"cannot read {settings.allowed_keys_file}: {err}"
            ) from None
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                try:
                    keys.add(decode_public_key(entry.split()[0]))
                except ValueError as err:
                    raise ConfigError("relay.allowed_keys_file", f"line {number}: {err}") from None
    return Policy(settings.policy, frozenset(keys))


def load_keys(config: Config) -> list[StaticKeyPair]:
    keys = [StaticKeyPair.from_private(read_private_key(config.node.private_key_file))]
    if config.node.previous_private_key_file is not None:
        keys.append(
            StaticKeyPair.from_private(read_private_key(config.node.previous_private_key_file))
        )
    return keys


@dataclass
class Half:
    """One side of a routed stream: a link and the stream's id on it."""

    link: LinkTransport
    stream_id: int
    # bytes received from this side not yet accepted by the other link
    pending: collections.deque[bytes] = field(default_factory=collections.deque)
    fin_received: bool = False
    fin_sent: bool = False


@dataclass
class Route:
    a: Half
    b: Half
    closed: bool = False

    def other(self, half: Half) -> Half:
        return self.b if half is self.a else self.a


class Relay:
    def __init__(self, config: Config) -> None:
        self.config = config
        settings = config.relay
        assert settings is not None
        self.settings = settings
        self.metrics = NodeMetrics()
        self.events = ev.SecurityEventLog(
            config.log.events_file,
            "relay",
            on_event=lambda name, _r: self.metrics.security_events.labels(name).inc(),
        )
        self.keys = load_keys(config)
        self.policy = load_policy(config)
        self.state = StateDB(config.node.state_dir)
        self.replay_store = SqliteReplayStore(self.state)
        self.limiter = SourceRateLimiter(settings.handshake_rate, settings.handshake_burst)
        self.link_cfg = config.link_config()
        self.links: set[LinkTransport] = set()
        self.attached: dict[ipaddress.IPv6Address, LinkTransport] = {}
        self.server: asyncio.AbstractServer | None = None
        self.metrics_server: Any = None
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        # Counts since the last write to SQLite (lifetime totals survive restarts there).
        self.unsaved: collections.Counter[str] = collections.Counter()
        # Audit aid: every stream byte this relay can see (after link decryption), appended.
        self.capture: BinaryIO | None = None
        if settings.forwarded_capture_file is not None:
            self.capture = open(settings.forwarded_capture_file, "ab")  # noqa: SIM115

    # ------------------------------------------------------------------ lifetime

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        listen = self.settings.listen
        self.server = await loop.create_server(
            self._new_link, listen.host, listen.port, backlog=1024, reuse_address=True
        )
        if self.settings.metrics_listen is not None:
            self.metrics_server = self.metrics.serve(self.settings.metrics_listen)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        log.info(
            "relay %s listening on %s (policy %s)",
            encode_public_key(self.keys[0].public),
            listen,
            self.policy.mode,
        )
        # A line on stdout that tests and service managers can wait for.
        print(f"altmesh-relay ready on {listen}", flush=True)
        saver = asyncio.create_task(self._save_counters_periodically())
        while not self._stop.is_set():
            reload_wait = asyncio.ensure_future(self._reload.wait())
            stop_wait = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({reload_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            reload_wait.cancel()
            stop_wait.cancel()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
        saver.cancel()
        await self.drain()
        return 0

    async def _save_counters_periodically(self) -> None:
        while True:
            await asyncio.sleep(COUNTER_SAVE_SECONDS)
            self.save_counters()

    def save_counters(self) -> None:
        for name, value in self.unsaved.items():
            self.state.add_counter(name, value)
        self.unsaved.clear()

    def reload(self) -> None:
        """SIGHUP: re-read policy and keys; existing links stay up."""
        try:
            config = load_config(self.config.source)
            if config.role != "relay":
                raise ConfigError("role", "is no longer 'relay'")
            policy = load_policy(config)
            keys = load_keys(config)
        except (ConfigError, KeyFileError) as err:
            log.error("reload failed, keeping the old settings: %s", err)
            return
        old_publics = [k.public for k in self.keys]
        new_publics = [k.public for k in keys]
        if old_publics != new_publics:
            self.events.emit(
                ev.KEY_ROTATION,
                "keys_reloaded",
                public_key=encode_public_key(new_publics[0]),
                previous_keys=",".join(encode_public_key(k) for k in new_publics[1:]),
            )
        self.keys = keys
        self.policy = policy
        self.events.reopen()
        # Links whose key the new policy refuses are closed; all others keep running.
        for link in list(self.links):
            remote = link.conn.remote_static
            if remote is not None and not policy.allows(remote):
                self.events.emit(
                    ev.KEY_REFUSED,
                    "policy_reload",
                    peer=link.peername,
                    peer_key=encode_public_key(remote),
                )
                link.close("key no longer allowed")
        log.info("reloaded: policy %s, %d allowed keys", policy.mode, len(policy.allowed))

    async def drain(self) -> None:
        """SIGTERM: stop accepting, let streams finish for drain_seconds, close links cleanly."""
        log.info("draining %d links", len(self.links))
        if self.server is not None:
            self.server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        while self._open_routes() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for link in list(self.links):
            link.close("relay shutting down")
        await asyncio.sleep(0.05)  # let the close records leave
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self.save_counters()
        self.state.close()
        self.events.close()
        if self.capture is not None:
            self.capture.close()
        log.info("stopped")

    def _open_routes(self) -> int:
        return sum(len(link.app.get("routes", {})) for link in self.links)

    # ------------------------------------------------------------------ accepting links

    def _new_link(self) -> LinkTransport:
        conn = LinkConnection.responder(
            self.link_cfg,
            self.keys,
            authorize=self.policy_allows,
            replay_store=self.replay_store,
        )
        return LinkTransport(conn, self, is_initiator=False, on_connection_made=self._admit)

    def policy_allows(self, public_key: bytes) -> bool:
        return self.policy.allows(public_key)

    def _admit(self, link: LinkTransport) -> bool:
        source = link.peername.rsplit(":", 1)[0]
        if not self.limiter.allow(source, asyncio.get_running_loop().time()):
            self.events.emit(ev.RATE_LIMITED, "handshake_rate", peer=link.peername)
            self.metrics.rejections.labels("rate_limited").inc()
            return False
        if len(self.links) >= self.settings.max_links:
            self.metrics.rejections.labels("too_many_links").inc()
            return False
        self.links.add(link)
        link.app["routes"] = {}
        return True

    # ------------------------------------------------------------------ LinkHandler

    def link_event(self, link: LinkTransport, event: object) -> None:
        routes: dict[int, tuple[Route, Half]] = link.app["routes"]
        if isinstance(event, pev.StreamData):
            entry = routes.get(event.stream_id)
            if entry is not None:
                route, half = entry
                self.metrics.bytes_in.inc(len(event.data))
                if self.capture is not None and self.capture.tell() < CAPTURE_LIMIT:
                    self.capture.write(event.data)
                    self.capture.flush()
                half.pending.append(event.data)
                self._forward(route, half)
            else:
                # Data for a stream we already reset: give the credit back and drop it.
                with contextlib.suppress(ProtocolError):
                    link.conn.acknowledge(event.stream_id, len(event.data))
        elif isinstance(event, pev.StreamWritable):
            entry = routes.get(event.stream_id)
            if entry is not None:
                route, half = entry
                self._forward(route, route.other(half))
        elif isinstance(event, pev.StreamOpened):
            self._route_stream(link, event)
        elif isinstance(event, pev.StreamEnded):
            entry = routes.get(event.stream_id)
            if entry is not None:
                route, half = entry
                half.fin_received = True
                self._forward(route, half)
        elif isinstance(event, pev.StreamReset):
            entry = routes.get(event.stream_id)
            if entry is not None:
                route, half = entry
                self._close_route(route, reset_other_of=half, reason=event.reason)
        elif isinstance(event, pev.HandshakeComplete):
            self._attach(link, event)
        elif isinstance(event, pev.Rekeyed):
            self.metrics.rekeys.inc()
            self.events.emit(
                ev.REKEY,
                peer=link.peername,
                peer_address=link.conn.remote_address,
                initiated_by_us=event.initiated_by_us,
            )
        elif isinstance(event, pev.SecurityNotice):
            self.metrics.rejections.labels(event.kind).inc()
            self.events.emit(
                ev.PROTOCOL_VIOLATION,
                event.kind,
                peer=link.peername,
                peer_key=_key_text(link.conn.remote_static),
                detail=event.detail,
            )
        elif isinstance(event, pev.LinkClosed):
            link.close(f"peer closed: {event.reason}")

    def _attach(self, link: LinkTransport, event: pev.HandshakeComplete) -> None:
        if link.app.get("attached"):
            return  # rekeys are internal to the core; a link attaches once
        self.metrics.handshakes.labels("ok").inc()
        self.unsaved["handshakes_ok"] += 1
        self.metrics.links.inc()
        link.app["attached"] = True
        address = event.remote_address
        previous = self.attached.get(address)
        self.attached[address] = link
        log.info(
            "link from %s: key %s address %s%s",
            link.peername,
            encode_public_key(event.remote_static),
            address,
            " (replaces an older link)" if previous is not None else "",
        )

    def link_failed(self, link: LinkTransport, error: ProtocolError) -> None:
        event = ev.event_for_protocol_error(error, during_handshake=not link.app.get("attached"))
        if not link.app.get("attached"):
            self.metrics.handshakes.labels("failed").inc()
            self.unsaved["handshakes_failed"] += 1
        self.metrics.rejections.labels(error.kind).inc()
        self.unsaved[f"rejected_{error.kind}"] += 1
        self.events.emit(
            event,
            error.kind,
            peer=link.peername,
            peer_key=_key_text(getattr(error, "remote_static", None) or link.conn.remote_static),
            detail=str(error),
        )

    def link_writable(self, link: LinkTransport) -> None:
        for route, half in list(link.app.get("routes", {}).values()):
            self._forward(route, route.other(half))

    def link_lost(self, link: LinkTransport, reason: str) -> None:
        self.links.discard(link)
        if link.app.get("attached"):
            self.metrics.links.dec()
            address = link.conn.remote_address
            if address is not None and self.attached.get(address) is link:
                del self.attached[address]
        for route, half in list(link.app.get("routes", {}).values()):
            self._close_route(route, reset_other_of=half, reason="peer link lost")

    # ------------------------------------------------------------------ routing streams

    def _route_stream(self, link: LinkTransport, event: pev.StreamOpened) -> None:
        target = self.attached.get(event.destination)
        if target is None or target.closed or target is link:
            self.metrics.rejections.labels("no_route").inc()
            link.conn.reset_stream(event.stream_id, RESET_NO_ROUTE, "no route to destination")
            link.kick()
            return
        try:
            target_id = target.conn.open_stream(event.destination, event.port)
        except ProtocolError as error:
            self.metrics.rejections.labels(error.kind).inc()
            link.conn.reset_stream(event.stream_id, RESET_NO_ROUTE, f"cannot open: {error.kind}")
            link.kick()
            return
        route = Route(Half(link, event.stream_id), Half(target, target_id))
        link.app["routes"][event.stream_id] = (route, route.a)
        target.app["routes"][target_id] = (route, route.b)
        self.metrics.streams.inc()
        self.metrics.streams_opened.inc()
        self.unsaved["streams_routed"] += 1
        target.kick()

    def _forward(self, route: Route, source: Half) -> None:
        """Move what `source` received to the other side, as far as its credit allows."""
        if route.closed:
            return
        dest = route.other(source)
        if dest.link.write_paused and source.pending:
            # The destination does not read what it is sent: hold the data here (and its
            # credit from the source) until link_writable, so its write buffer stays bounded.
            return
        conn = dest.link.conn
        pending = source.pending
        forwarded = 0
        try:
            while pending:
                chunk = pending[0]
                accepted = conn.send_stream_data(dest.stream_id, chunk)
                if accepted <= 0:
                    break
                forwarded += accepted
                if accepted < len(chunk):
                    pending[0] = chunk[accepted:]
                    break
                pending.popleft()
            if not pending and source.fin_received and not dest.fin_sent:
                conn.end_stream(dest.stream_id)
                dest.fin_sent = True
            if forwarded:
                self.metrics.bytes_out.inc(forwarded)
                self.unsaved["bytes_forwarded"] += forwarded
                source.link.conn.acknowledge(source.stream_id, forwarded)
                source.link.kick()
        except ProtocolError as error:
            log.debug("route failed: %s", error)
            self._close_route(route, reset_other_of=dest, reason=error.kind)
            return
        dest.link.kick()
        if route.a.fin_sent and route.b.fin_sent:
            self._close_route(route, reset_other_of=None, reason="")

    def _close_route(self, route: Route, reset_other_of: Half | None, reason: str) -> None:
        if route.closed:
            return
        route.closed = True
        self.metrics.streams.dec()
        for half in (route.a, route.b):
            half.link.app.get("routes", {}).pop(half.stream_id, None)
            half.pending.clear()
        if reset_other_of is not None:
            other = route.other(reset_other_of)
            if not other.link.closed:
                with contextlib.suppress(ProtocolError):
                    other.link.conn.reset_stream(other.stream_id, RESET_PEER_GONE, reason)
                other.link.kick()


def _key_text(key: bytes | None) -> str | None:
    return encode_public_key(key) if key is not None else None
