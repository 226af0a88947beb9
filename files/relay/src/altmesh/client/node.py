"""The client node (`altmesh up` / `altmesh serve`): one link to a relay, SOCKS5, forwards, service.

A client opens streams to `.alt` names: it resolves the name (DNSSEC-validated address and key),
opens a link stream to the address through its relay, and runs an end-to-end Noise session inside
that stream with the key from DNS. A service accepts such streams, completes the end-to-end
handshake, and only then connects the stream to its local target.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import random
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from altmesh import events as ev
from altmesh.client import socks5
from altmesh.client.dnssec import AltResolver, ResolveError, parse_trust_anchors
from altmesh.config import Config, Forward, HostPort, RelayEndpoint, ServiceSettings
from altmesh.keyfile import decode_public_key, encode_public_key, read_private_key
from altmesh.net.link import LinkTransport
from altmesh.net.stream import (
    RESET_PORT_REFUSED,
    RESET_TARGET_UNREACHABLE,
    E2EStream,
    StreamCounters,
)
from altmesh.protocol import (
    EndToEndSession,
    LinkConnection,
    ProtocolError,
    StaticKeyPair,
    node_address,
)
from altmesh.protocol import events as pev
from altmesh.state import SqliteReplayStore, StateDB

log = logging.getLogger("altmesh.client")

LINK_ESTABLISH_TIMEOUT = 10.0
STREAM_OPEN_TIMEOUT = 15.0
PING_INTERVAL = 5.0


class MonotonicWallclock:
    """Wall-clock time that never repeats or goes back within this process.

    Every end-to-end handshake carries a TAI64N timestamp and the far end refuses one that is not
    newer than the last from our key, so two streams opened in the same microsecond must still
    carry different, increasing timestamps.
    """

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self) -> float:
        now = time.time()
        if now <= self.last:
            now = self.last + 1e-6
        self.last = now
        return now


class Backoff:
    """Exponential backoff with full jitter: the n-th retry waits uniform(low, min(high, low*2^n)).

    Jitter spreads the reconnects of many clients after a relay restart over the whole window,
    so they do not all hit the relay (and its handshake rate limit) at the same instant.
    """

    def __init__(self, low: float, high: float, rng: random.Random | None = None) -> None:
        self.low = low
        self.high = high
        self.rng = rng or random.Random()
        self.window = low

    def next_delay(self) -> float:
        delay = self.rng.uniform(self.low, self.window)
        self.window = min(self.high, self.window * 2)
        return delay

    def reset(self) -> None:
        self.window = self.low


class ClientNode:
    """Everything `altmesh up` and `altmesh serve` run, in one event loop."""

    def __init__(
        self,
        config: Config,
        *,
        service: ServiceSettings | None = None,
        forwards: tuple[Forward, ...] = (),
        socks_listen: HostPort | None = None,
        enable_socks: bool = True,
    ) -> None:
        self.config = config
        self.role = "service" if service is not None else "client"
        keys = [StaticKeyPair.from_private(read_private_key(config.node.private_key_file))]
        if config.node.previous_private_key_file is not None:
            keys.append(
                StaticKeyPair.from_private(read_private_key(config.node.previous_private_key_file))
            )
        self.keys = keys
        self.address = node_address(config.network.prefix, keys[0].public)
        self.service = service
        self.forwards = forwards
        client = config.client
        assert client is not None
        self.socks_listen = socks_listen or client.socks_listen if enable_socks else None
        self.control_path = client.control_socket
        self.link_cfg = config.link_config()
        self.events = ev.SecurityEventLog(config.log.events_file, self.role)
        self.state = StateDB(config.node.state_dir)
        self.replay_store = SqliteReplayStore(self.state)
        self.wallclock = MonotonicWallclock()
        self.counters = StreamCounters()
        self.resolver: AltResolver | None = None
        if config.dns is not None:
            self.resolver = AltResolver(
                config.dns.servers,
                parse_trust_anchors(config.dns.trust_anchors),
                config.network.prefix,
                config.dns.timeout_seconds,
            )
        self.known_keys: dict[ipaddress.IPv6Address, bytes] = {}
        self.link: LinkTransport | None = None
        self.link_state = "connecting"
        self.relay: RelayEndpoint | None = None
        self.rtt: float | None = None
        self.connected_since: float | None = None
        self.reconnects = 0
        self.link_bytes_base = (0, 0)
        self._link_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.live_streams: set[E2EStream] = set()

    # ------------------------------------------------------------------ lifetime

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        try:
            await self._start_listeners()
        except OSError as err:
            log.error("cannot listen: %s", err)
            return 2
        if self.service is not None:
            log.info(
                'serving %s -> %s; publish: %s. AAAA %s and %s. TXT "altmesh-key=%s"',
                self.service.name,
                self.service.target,
                self.service.name,
                self.address,
                self.service.name,
                encode_public_key(self.keys[0].public),
            )
        link_task = asyncio.create_task(self._keep_link())
        ping_task = asyncio.create_task(self._ping_loop())
        await self._stopping.wait()
        log.info("stopping")
        link_task.cancel()
        ping_task.cancel()
        for server in self._servers:
            server.close()
        for stream in list(self.live_streams):
            stream.finish(reset=True, reason="client stopping")
        if self.link is not None:
            self.link.close("client stopping")
        with contextlib.suppress(OSError):
            self.control_path.unlink()
        self.state.close()
        self.events.close()
        return 0

    async def _start_listeners(self) -> None:
        loop = asyncio.get_running_loop()
        if self.socks_listen is not None:
            server = await loop.create_server(
                lambda: SocksStream(self), self.socks_listen.host, self.socks_listen.port
            )
            self._servers.append(server)
            log.info("SOCKS5 on %s", self.socks_listen)
        for forward in self.forwards:
            server = await loop.create_server(
                functools.partial(ForwardStream, self, forward), "127.0.0.1", forward.local_port
            )
            self._servers.append(server)
            log.info(
                "forward 127.0.0.1:%d -> %s:%d", forward.local_port, forward.name, forward.port
            )
        self.control_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        control = await asyncio.start_unix_server(self._serve_status, path=str(self.control_path))
        self.control_path.chmod(0o600)
        self._servers.append(control)

    # ------------------------------------------------------------------ the link to a relay

    async def _keep_link(self) -> None:
        """Connect to a relay; on loss reconnect with exponential backoff and full jitter."""
        client = self.config.client
        assert client is not None
        backoff = Backoff(client.reconnect_min_seconds, client.reconnect_max_seconds)
        attempt = 0
        while not self._stopping.is_set():
            relay = self.config.relays[attempt % len(self.config.relays)]
            attempt += 1
            self.link_state = "connecting"
            lost = await self._connect_once(relay)
            if lost is None:  # never came up
                self.link_state = "down"
                sleep = backoff.next_delay()
                log.info("link to %s failed; retrying in %.2fs", relay.address, sleep)
                await asyncio.sleep(sleep)
                continue
            backoff.reset()
            await lost.wait()
            self.reconnects += 1
            self.link_state = "down"
            await asyncio.sleep(random.uniform(0, client.reconnect_min_seconds))

    async def _connect_once(self, relay: RelayEndpoint) -> asyncio.Event | None:
        loop = asyncio.get_running_loop()
        conn = LinkConnection.initiator(
            self.link_cfg, self.keys[0], decode_public_key(relay.public_key)
        )
        lost = asyncio.Event()
        try:
            _transport, link = await asyncio.wait_for(
                loop.create_connection(
                    lambda: LinkTransport(conn, self, is_initiator=True),
                    relay.address.host,
                    relay.address.port,
                ),
                LINK_ESTABLISH_TIMEOUT,
            )
            link.app["lost"] = lost
            await asyncio.wait_for(asyncio.shield(link.established_waiter), LINK_ESTABLISH_TIMEOUT)
        except (OSError, ConnectionError, TimeoutError) as err:
            log.info("cannot reach relay %s: %s", relay.address, err or type(err).__name__)
            return None
        if link.closed:
            return None
        self.link = link
        self.relay = relay
        self.link_state = "established"
        self.connected_since = time.time()
        self._link_changed.set()
        self._link_changed = asyncio.Event()
        log.info("link to relay %s established", relay.address)
        link.conn.ping(time.monotonic())
        link.kick()
        return lost

    async def established_link(self) -> LinkTransport:
        deadline = asyncio.get_running_loop().time() + LINK_ESTABLISH_TIMEOUT
        while self.link is None or self.link.closed:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise ConnectionError("no link to a relay")
            waiter = self._link_changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), remaining)
        return self.link

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            link = self.link
            if link is not None and not link.closed:
                with contextlib.suppress(ProtocolError):
                    link.conn.ping(time.monotonic())
                    link.kick()

    # ------------------------------------------------------------------ LinkHandler

    def link_event(self, link: LinkTransport, event: object) -> None:
        streams: dict[int, E2EStream] = link.app.get("streams", {})
        if isinstance(event, pev.StreamData):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.stream_data(event.data)
        elif isinstance(event, pev.StreamWritable):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.stream_writable()
        elif isinstance(event, pev.StreamEnded):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.stream_ended()
        elif isinstance(event, pev.StreamReset):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream.stream_reset(event.reason)
        elif isinstance(event, pev.StreamOpened):
            self._incoming_stream(link, event)
        elif isinstance(event, pev.PongReceived):
            self.rtt = event.rtt
        elif isinstance(event, pev.Rekeyed):
            self.events.emit(ev.REKEY, peer=link.peername, initiated_by_us=event.initiated_by_us)
        elif isinstance(event, pev.SecurityNotice):
            self.events.emit(
                ev.PROTOCOL_VIOLATION, event.kind, peer=link.peername, detail=event.detail
            )
        elif isinstance(event, pev.LinkClosed):
            link.close(f"relay closed the link: {event.reason}")

    def link_failed(self, link: LinkTransport, error: ProtocolError) -> None:
        self.events.emit(
            ev.event_for_protocol_error(error), error.kind, peer=link.peername, detail=str(error)
        )

    def link_writable(self, link: LinkTransport) -> None:
        for stream in list(link.app.get("streams", {}).values()):
            stream.stream_writable()

    def link_lost(self, link: LinkTransport, reason: str) -> None:
        log.info("link %s lost: %s", link.peername, reason)
        for stream in list(link.app.get("streams", {}).values()):
            stream.link_lost()
        if self.link is link:
            self.link = None
            self.link_state = "down"
        lost = link.app.get("lost")
        if isinstance(lost, asyncio.Event):
            lost.set()

    # ------------------------------------------------------------------ outgoing streams

    async def lookup(self, host: str) -> tuple[ipaddress.IPv6Address, bytes]:
        """Address and key of a `.alt` name, or of an address learned from an earlier lookup."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if literal.version == 6 and literal in self.config.network.prefix:
                assert isinstance(literal, ipaddress.IPv6Address)
                key = self.known_keys.get(literal)
                if key is not None:
                    return literal, key
                raise ResolveError(
                    "unknown_key", host, "no key known for this address; use its .alt name"
                )
            raise ResolveError("not_allowed", host, "only .alt names and network addresses")
        if self.resolver is None:
            raise ResolveError("no_dns", host, "this node has no [dns] configuration")
        resolved = await self.resolver.resolve(host)
        self.known_keys[resolved.address] = resolved.public_key
        return resolved.address, resolved.public_key

    async def open_stream(self, stream: E2EStream, host: str, port: int) -> None:
        """Resolve, open a link stream and start the end-to-end handshake on it."""
        address, public_key = await self.lookup(host)
        link = await self.established_link()
        conn = link.conn
        stream_id = conn.open_stream(address, port)
        e2e = EndToEndSession.initiator(
            self.config.network.name, self.keys[0], public_key, wallclock=self.wallclock
        )
        stream.on_security = self._e2e_reporter(link, e2e)
        stream.attach(link, stream_id, e2e)
        self.live_streams.add(stream)
        stream.send_raw(e2e.start())

    def _e2e_reporter(
        self, link: LinkTransport, e2e: EndToEndSession
    ) -> Callable[[ProtocolError], None]:
        """Logs an end-to-end failure of one stream (handshake, decryption, truncation)."""

        def report(error: ProtocolError) -> None:
            self.events.emit(
                ev.event_for_protocol_error(error, during_handshake=e2e.remote_static is None),
                error.kind,
                peer=link.peername,
                peer_key=encode_public_key(e2e.remote_static) if e2e.remote_static else None,
                detail=f"end-to-end: {error}",
            )

        return report

    def stream_done(self, stream: E2EStream) -> None:
        self.live_streams.discard(stream)

    # ------------------------------------------------------------------ incoming streams

    def _incoming_stream(self, link: LinkTransport, event: pev.StreamOpened) -> None:
        service = self.service
        if service is None or service.target is None:
            link.conn.reset_stream(event.stream_id, RESET_PORT_REFUSED, "no service here")
            link.kick()
            return
        if service.ports and event.port not in service.ports:
            self.events.emit(ev.E2E_REFUSED, "port_refused", peer=link.peername, port=event.port)
            link.conn.reset_stream(event.stream_id, RESET_PORT_REFUSED, "port not published")
            link.kick()
            return
        e2e = EndToEndSession.responder(
            self.config.network.name,
            self.keys,
            authorize=lambda _key: True,
            replay_store=self.replay_store,
        )
        stream = ServiceStream(self, service.target)
        stream.on_security = self._e2e_reporter(link, e2e)
        stream.attach(link, event.stream_id, e2e)
        self.live_streams.add(stream)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        link = self.link
        stats: dict[str, Any] = {}
        if link is not None:
            raw = link.conn.stats
            stats = {k: v for k, v in vars(raw).items()} if hasattr(raw, "__dict__") else {}
        return {
            "role": self.role,
            "address": str(self.address),
            "public_key": encode_public_key(self.keys[0].public),
            "link_state": self.link_state,
            "relay": str(self.relay.address) if self.relay else None,
            "relay_key": self.relay.public_key if self.relay else None,
            "rtt_ms": round(self.rtt * 1000, 3) if self.rtt is not None else None,
            "connected_since": self.connected_since,
            "reconnects": self.reconnects,
            "streams_open": self.counters.streams_open,
            "streams_total": self.counters.streams_total,
            "bytes_in": self.counters.bytes_in,
            "bytes_out": self.counters.bytes_out,
            "link": {k: v for k, v in stats.items() if isinstance(v, int | float | str)},
            "socks": str(self.socks_listen) if self.socks_listen else None,
            "forwards": [str(f) for f in self.forwards],
            "service": self.service.name if self.service else None,
        }

    async def _serve_status(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            writer.write(json.dumps(self.status()).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


# ---------------------------------------------------------------------- local stream kinds


def _socks_code_for(error: BaseException) -> int:
    if isinstance(error, ResolveError):
        if error.kind == "not_allowed":
            return socks5.REP_NOT_ALLOWED
        return socks5.REP_HOST_UNREACHABLE
    if isinstance(error, ConnectionError | TimeoutError):
        return socks5.REP_NETWORK_UNREACHABLE
    return socks5.REP_GENERAL_FAILURE


class _ClientStream(E2EStream):
    """A user's connection (SOCKS or forward) that becomes a stream to a `.alt` service."""

    def __init__(self, node: ClientNode) -> None:
        super().__init__(node.counters, node.stream_done)
        self.node = node
        self._pending_plain = b""
        self._open_timer: asyncio.TimerHandle | None = None

    def connect_to(self, host: str, port: int) -> None:
        self._update_local_reading()  # not open yet: the local socket is paused
        task = self.node.spawn(self.node.open_stream(self, host, port))
        task.add_done_callback(self._opened)
        loop = asyncio.get_running_loop()
        self._open_timer = loop.call_later(STREAM_OPEN_TIMEOUT, self._open_timed_out)

    def _opened(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.refuse(socks5.REP_GENERAL_FAILURE, "cancelled")
            return
        error = task.exception()
        if error is not None:
            log.info("cannot open stream: %s", error)
            self.refuse(_socks_code_for(error), str(error))

    def _open_timed_out(self) -> None:
        if not self.open and not self.finished:
            self.refuse(socks5.REP_TTL_EXPIRED, "timed out opening the stream")

    def refuse(self, code: int, reason: str) -> None:
        """The stream could not be opened; tell the user (SOCKS reply) and close."""
        if self._open_timer is not None:
            self._open_timer.cancel()
        if self.local is not None and not self.local.is_closing():
            self.local.close()  # graceful: a SOCKS reply written just before still leaves
        self.finish(reset=True, reason=reason)

    def e2e_established(self) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
        if self._pending_plain:  # before start_flowing, which may already end our direction
            data, self._pending_plain = self._pending_plain, b""
            self.queue_plaintext(data)
        self.start_flowing()

    def stream_reset(self, reason: str) -> None:
        if not self.open:
            self.refuse(socks5.REP_HOST_UNREACHABLE, reason)
        super().stream_reset(reason)


class SocksStream(_ClientStream):
    """RFC 1928 server side: no-auth, CONNECT to `.alt` names or network IPv6 addresses."""

    def __init__(self, node: ClientNode) -> None:
        super().__init__(node)
        self._buffer = b""
        self._phase = "greeting"

    def early_data(self, data: bytes) -> None:
        if self._phase == "waiting":
            self._pending_plain += data  # pipelined before our reply
            return
        self._buffer += data
        try:
            if self._phase == "greeting":
                parsed = socks5.parse_greeting(self._buffer)
                if parsed is None:
                    return
                methods, used = parsed
                self._buffer = self._buffer[used:]
                method = socks5.choose_method(methods)
                assert self.local is not None
                self.local.write(socks5.method_reply(method))
                if method == socks5.METHOD_NONE_ACCEPTABLE:
                    self.local.close()
                    return
                self._phase = "request"
            if self._phase == "request":
                request = socks5.parse_request(self._buffer)
                if request is None:
                    return
                connect, used = request
                self._pending_plain = self._buffer[used:]
                self._buffer = b""
                self._phase = "waiting"
                self.connect_to(connect.host, connect.port)
        except socks5.SocksError as error:
            log.info("SOCKS request refused: %s", error)
            if self.local is not None:
                if self._phase == "request":
                    self.local.write(socks5.reply(error.reply))
                self.local.close()

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.early_data(data)
        else:
            super().data_received(data)

    def e2e_established(self) -> None:
        if self.local is not None and not self.local.is_closing():
            self.local.write(socks5.reply(socks5.REP_SUCCEEDED, ipaddress.IPv6Address(0), 0))
        self._phase = "open"
        super().e2e_established()

    def refuse(self, code: int, reason: str) -> None:
        if self._phase == "waiting" and self.local is not None and not self.local.is_closing():
            self.local.write(socks5.reply(code))
            self._phase = "refused"
        super().refuse(code, reason)


class ForwardStream(_ClientStream):
    """A connection to a local forward port: a stream to the forward's fixed name and port."""

    def __init__(self, node: ClientNode, forward: Forward) -> None:
        super().__init__(node)
        self.forward = forward

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.connect_to(self.forward.name, self.forward.port)

    def early_data(self, data: bytes) -> None:
        self._pending_plain += data


class ServiceStream(E2EStream):
    """A stream arriving at a service: e2e handshake first, then connect to the local target."""

    def __init__(self, node: ClientNode, target: HostPort) -> None:
        super().__init__(node.counters, node.stream_done)
        self.node = node
        self.target = target
        self._connecting = False

    def handshake_done(self) -> bool:
        # The responder knows the client's key once the first handshake message is in; its reply
        # is held back until the target accepted the connection, so the client sees a refusal.
        return self.e2e is not None and self.e2e.remote_static is not None

    def e2e_established(self) -> None:
        if self._connecting:
            return
        self._connecting = True
        loop = asyncio.get_running_loop()
        task = self.node.spawn(
            loop.create_connection(lambda: self, self.target.host, self.target.port)
        )
        task.add_done_callback(self._connect_failed)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.finished:
            transport.close()
            return
        # Only now is the handshake answered: the client learns the target accepted.
        assert self.e2e is not None
        self.send_raw(self.e2e.pending_output())
        self.start_flowing()

    def early_data(self, data: bytes) -> None:
        # Cannot happen: the stream opens in connection_made, before any data_received.
        self.counters.bytes_out += len(data)

    def _connect_failed(self, task: asyncio.Task[Any]) -> None:
        if (task.cancelled() or task.exception() is not None) and not self.finished:
            log.info("target %s unreachable: %s", self.target, task.exception())
            self.finish(reset=True, code=RESET_TARGET_UNREACHABLE, reason="target unreachable")


def control_status(path: Path) -> dict[str, Any]:
    """Read a running node's status from its control socket (used by `altmesh status`)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    result: dict[str, Any] = json.loads(data)
    return result
