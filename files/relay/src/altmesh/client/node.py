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
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, assert_never, cast

from altmesh import events as ev
from altmesh.client import socks5
from altmesh.client.activity import RecentErrors, RecordingEventLog
from altmesh.client.dnssec import AltResolver, ResolveError, parse_trust_anchors
from altmesh.client.humanize import human_bytes
from altmesh.client.socks_replies import reply_for_error, reply_for_reset
from altmesh.client.status_page import StatusPage
from altmesh.client.uplink import ClientLinkState, Uplink
from altmesh.config import Config, Forward, HostPort, ServiceSettings
from altmesh.keyfile import encode_public_key, read_private_key
from altmesh.net.link import LinkTransport
from altmesh.net.stream import (
    RESET_GIVEN_UP,
    RESET_PORT_REFUSED,
    RESET_TARGET_UNREACHABLE,
    E2EStream,
    StreamCounters,
    abort_with_reset,
)
from altmesh.protocol import (
    EndToEndSession,
    Event,
    HandshakeComplete,
    HandshakeTimeout,
    LinkClosed,
    MalformedRouteInfo,
    PongReceived,
    ProtocolError,
    Rekeyed,
    ReorderWindow,
    RouteInfoReceived,
    SecurityNotice,
    StaticKeyPair,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamWritable,
    TimestampIssuer,
    decode_stream_path,
    node_address,
    route_info_type,
)
from altmesh.protocol.constants import RouteInfoType
from altmesh.state import SqliteReplayStore, StateDB

log = logging.getLogger("altmesh.client")

STREAM_OPEN_TIMEOUT = 15.0
# Connections turned away because every SOCKS negotiation slot was taken are logged at most
# this often (seconds), with their count: a flood does not become a flood of log lines.
SOCKS_REFUSAL_REPORT_EVERY = 10.0


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
        self.events = RecordingEventLog(
            config.log.events_file,
            self.role,
            aggregate_seconds=config.log.aggregate_seconds,
            max_lines_per_second=config.log.max_events_per_second,
            max_lines_burst=config.log.max_events_burst,
        )
        self.recent_errors = RecentErrors()
        self.state = StateDB(config.node.state_dir)
        self.replay_store = SqliteReplayStore(
            self.state, freshness_seconds=config.node.handshake_freshness_seconds
        )
        # Services share one reorder window over the store (every end-to-end session they answer).
        self.replay_window = ReorderWindow(self.replay_store)
        # Every handshake this node starts (link and end-to-end) takes its timestamp from here.
        self.timestamps = TimestampIssuer(time.time)
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
        self.uplink = Uplink(self, self.resolver)
        self.status_page = (
            StatusPage(client.status_page, self.page_status) if client.status_page else None
        )
        self.socks_gate = socks5.NegotiationGate(client.socks_max_negotiations)
        self.socks_negotiation_timeout = client.socks_negotiation_timeout_seconds
        self._socks_refusal_reported = -SOCKS_REFUSAL_REPORT_EVERY
        self._stopping = asyncio.Event()
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.live_streams: set[E2EStream] = set()

    # ------------------------------------------------------------------ lifetime

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        self.recent_errors.install()
        try:
            await self._start_listeners()
        except OSError as err:
            log.error("cannot listen: %s", err)
            self.recent_errors.remove()
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
        link_task = asyncio.create_task(self.uplink.run())
        await self._stopping.wait()
        log.info("stopping")
        for server in self._servers:
            server.close()
        for stream in list(self.live_streams):
            stream.finish(reset=True, reason="client stopping")
        link_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link_task  # closes the links
        with contextlib.suppress(OSError):
            self.control_path.unlink()
        self.state.close()
        self.events.close()
        self.recent_errors.remove()
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
        if self.status_page is not None:
            self._servers.append(await self.status_page.start())
        control = await asyncio.start_unix_server(self._serve_status, path=str(self.control_path))
        self.control_path.chmod(0o600)
        self._servers.append(control)

    @property
    def link(self) -> LinkTransport[ClientLinkState] | None:
        """The link new streams go on (None while there is none)."""
        return self.uplink.link

    # ------------------------------------------------------------------ LinkHandler

    def link_event(self, link: LinkTransport[ClientLinkState], event: Event) -> None:
        streams = link.app.streams
        match event:
            case StreamData(stream_id, data):
                if (stream := streams.get(stream_id)) is not None:
                    stream.stream_data(data)
            case StreamWritable(stream_id):
                if (stream := streams.get(stream_id)) is not None:
                    stream.stream_writable()
            case StreamEnded(stream_id):
                if (stream := streams.get(stream_id)) is not None:
                    stream.stream_ended()
            case StreamReset(stream_id, code, reason):
                if (stream := streams.get(stream_id)) is not None:
                    stream.stream_reset(reason, code)
            case StreamOpened():
                self._incoming_stream(link, event)
            case PongReceived(rtt):
                self.uplink.pong(link, rtt)
            case Rekeyed(initiated_by_us):
                self.events.emit(ev.REKEY, peer=link.peername, initiated_by_us=initiated_by_us)
            case SecurityNotice(kind, detail):
                self.events.emit(ev.PROTOCOL_VIOLATION, kind, peer=link.peername, detail=detail)
            case LinkClosed(reason):
                link.close(f"relay closed the link: {reason}")
            case HandshakeComplete():
                pass  # _connect_once waits on the adapter's established_waiter
            case RouteInfoReceived(payload):
                self._route_info(link, payload)
            case _:
                assert_never(event)

    def _route_info(self, link: LinkTransport[ClientLinkState], payload: bytes) -> None:
        """The relay's STREAM_PATH for one of our streams (other payloads are not for nodes)."""
        if route_info_type(payload) != RouteInfoType.STREAM_PATH:
            return
        try:
            path = decode_stream_path(payload)
        except MalformedRouteInfo as error:
            self.events.emit(
                ev.PROTOCOL_VIOLATION, error.kind, peer=link.peername, detail=str(error)
            )
            return
        stream = link.app.streams.get(path.stream_id)
        if stream is not None:
            stream.path = path
            log.debug("stream %d path: %s", path.stream_id, " -> ".join(path.names()))

    def link_failed(self, link: LinkTransport[ClientLinkState], error: ProtocolError) -> None:
        self.events.emit(
            ev.event_for_protocol_error(error), error.kind, peer=link.peername, detail=str(error)
        )

    def link_writable(self, link: LinkTransport[ClientLinkState]) -> None:
        for stream in list(link.app.streams.values()):
            stream.stream_writable()

    def link_lost(self, link: LinkTransport[ClientLinkState], reason: str) -> None:
        # A link that never came up is the uplink's to report (once per relay, not per attempt),
        # and a probe's short link is no news.
        level = logging.INFO if link.app.joined else logging.DEBUG
        log.log(level, "link %s lost: %s", link.peername, reason)
        for stream in list(link.app.streams.values()):
            stream.link_lost()
        self.uplink.link_lost(link, reason)

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
        await self.uplink.wait_for_link()  # no relay: fail at once, before asking DNS
        address, public_key = await self.lookup(host)
        link = await self.uplink.wait_for_link()
        conn = link.conn
        stream_id = conn.open_stream(address, port)
        e2e = EndToEndSession.initiator(
            self.config.network.name, self.keys[0], public_key, timestamps=self.timestamps
        )
        stream.on_security = self._e2e_reporter(link, e2e)
        stream.attach(link, stream_id, e2e)
        self.live_streams.add(stream)
        stream.send_raw(e2e.start())

    def _e2e_reporter(
        self, link: LinkTransport[ClientLinkState], e2e: EndToEndSession
    ) -> Callable[[ProtocolError], None]:
        """Logs an end-to-end failure of one stream (handshake, decryption, truncation)."""

        def report(error: ProtocolError) -> None:
            peer_key = encode_public_key(e2e.remote_static) if e2e.remote_static else None
            self.events.emit(
                ev.event_for_protocol_error(error, during_handshake=e2e.remote_static is None),
                error.kind,
                # Every stream comes through the one relay link: group by the far end's key.
                source=f"{link.peername} {peer_key}" if peer_key else None,
                peer=link.peername,
                peer_key=peer_key,
                detail=f"end-to-end: {error}",
            )

        return report

    def stream_done(self, stream: E2EStream) -> None:
        self.live_streams.discard(stream)
        link = stream.link
        if link is not None:
            self.uplink.streams_changed(cast(LinkTransport[ClientLinkState], link))

    # ------------------------------------------------------------------ incoming streams

    def _incoming_stream(self, link: LinkTransport[ClientLinkState], event: StreamOpened) -> None:
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
            replay_window=self.replay_window,
        )
        stream = ServiceStream(self, service.target)
        stream.on_security = self._e2e_reporter(link, e2e)
        stream.attach(link, event.stream_id, e2e)
        self.live_streams.add(stream)
        # A stream whose client never completes the end-to-end handshake must not hold one of
        # the link's stream slots (and the relay's) for ever.
        stream.arm_handshake_deadline(self.link_cfg.handshake_timeout)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        link = self.link
        stats: dict[str, Any] = {}
        if link is not None:
            stats = dict(vars(link.conn.stats))
        return {
            "role": self.role,
            "address": str(self.address),
            "public_key": encode_public_key(self.keys[0].public),
            **self.uplink.status(),
            "streams_open": self.counters.streams_open,
            "streams": [
                {"stream_id": stream.stream_id, "path": list(stream.path.names())}
                for stream in self.live_streams
                if stream.path is not None and not stream.finished
            ],
            "streams_total": self.counters.streams_total,
            "bytes_in": self.counters.bytes_in,
            "bytes_out": self.counters.bytes_out,
            "link": {k: v for k, v in stats.items() if isinstance(v, int | float | str)},
            "socks": str(self.socks_listen) if self.socks_listen else None,
            "forwards": [str(f) for f in self.forwards],
            "service": self.service.name if self.service else None,
        }

    def page_status(self) -> dict[str, Any]:
        """What the status page shows: the status, the streams, and what went wrong lately."""
        status = self.status()
        service = self.service
        status.update(
            bytes_in_text=human_bytes(self.counters.bytes_in),
            bytes_out_text=human_bytes(self.counters.bytes_out),
            open_streams=[self._describe(stream) for stream in self._open_streams()],
            service_detail=None
            if service is None
            else {
                "name": service.name,
                "target": str(service.target),
                "ports": list(service.ports),
            },
            errors=list(self.recent_errors.records),
            security_events=list(self.events.recent),
        )
        return status

    def _open_streams(self) -> list[E2EStream]:
        streams = [stream for stream in self.live_streams if not stream.finished]
        return sorted(streams, key=lambda stream: stream.stream_id)

    def _describe(self, stream: E2EStream) -> dict[str, Any]:
        link = cast(LinkTransport[ClientLinkState] | None, stream.link)
        relay = None
        if link is not None:
            with contextlib.suppress(KeyError):
                relay = self.uplink.selector.state(link.app.relay_key).candidate.name
        if isinstance(stream, _ClientStream):
            kind = stream.kind
            peer = stream.destination
            state = "open" if stream.open else "opening"
        else:
            kind = "service"
            remote = stream.e2e.remote_static if stream.e2e is not None else None
            peer = str(node_address(self.config.network.prefix, remote)) if remote else "?"
            state = "open" if stream.open else "handshake"
        return {
            "stream_id": stream.stream_id,
            "kind": kind,
            "peer": peer,
            "state": state,
            "path": [relay] if relay is not None else [],
            "bytes_in": stream.received,
            "bytes_out": stream.sent,
            "bytes_in_text": human_bytes(stream.received),
            "bytes_out_text": human_bytes(stream.sent),
        }

    def control_status(self) -> dict[str, Any]:
        """The status for `altmesh status` (the control socket is the owner's only)."""
        status = self.status()
        page = self.status_page
        status["status_page"] = None if page is None else page.url
        status["status_page_login"] = None if page is None else page.url_with_token
        return status

    async def _serve_status(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            writer.write(json.dumps(self.control_status()).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    def socks_refused(self) -> None:
        """A SOCKS connection found every negotiation slot taken (it was closed)."""
        now = time.monotonic()
        if now - self._socks_refusal_reported < SOCKS_REFUSAL_REPORT_EVERY:
            return
        self._socks_refusal_reported = now
        log.warning(
            "SOCKS5: closed %d new connection(s): %d negotiations are under way, the most "
            "client.socks_max_negotiations allows (each gets %g s)",
            self.socks_gate.take_refused(),
            self.socks_gate.active,
            self.socks_negotiation_timeout,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


# ---------------------------------------------------------------------- local stream kinds


class _ClientStream(E2EStream):
    """A user's connection (SOCKS or forward) that becomes a stream to a `.alt` service."""

    def __init__(self, node: ClientNode) -> None:
        super().__init__(node.counters, node.stream_done)
        self.node = node
        self._pending_plain = b""
        self._open_timer: asyncio.TimerHandle | None = None
        self._destination = "?"

    kind = "client"

    @property
    def destination(self) -> str:
        return self._destination

    def connect_to(self, host: str, port: int) -> None:
        self._destination = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
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
            self.refuse(reply_for_error(error), str(error))

    def _open_timed_out(self) -> None:
        if not self.open and not self.finished:
            self.refuse(socks5.REP_TTL_EXPIRED, "timed out opening the stream")

    def refuse(self, code: int, reason: str) -> None:
        """The stream could not be opened; tell the user (SOCKS reply) and close."""
        log.warning("stream refused: %s", reason)
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

    def stream_reset(self, reason: str, code: int = RESET_GIVEN_UP) -> None:
        if not self.open:
            reply, meaning = reply_for_reset(code)
            self.refuse(reply, f"{meaning} (reset code {code}: {reason})")  # one line, WARNING
        elif not self.finished:
            # An open stream cut by its path (a relay restarted, a link lost): what the user
            # sees as a reset connection, with the cause.
            log.info("stream reset (reset code %d: %s)", code, reason)
        super().stream_reset(reason, code)


class SocksStream(_ClientStream):
    """RFC 1928 server side: no-auth, CONNECT to `.alt` names or network IPv6 addresses."""

    kind = "socks"

    def __init__(self, node: ClientNode) -> None:
        super().__init__(node)
        self._buffer = b""
        self._phase = "greeting"
        self._negotiating = False
        self._negotiation_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.node.socks_gate.enter():
            self.node.socks_refused()
            self._phase = "refused"
            cast(asyncio.Transport, transport).abort()
            return
        self._negotiating = True
        timeout = self.node.socks_negotiation_timeout
        self._negotiation_timer = asyncio.get_running_loop().call_later(
            timeout, self._negotiation_timed_out
        )

    def _negotiation_done(self) -> None:
        if self._negotiating:
            self._negotiating = False
            self.node.socks_gate.leave()
        if self._negotiation_timer is not None:
            self._negotiation_timer.cancel()
            self._negotiation_timer = None

    def _negotiation_timed_out(self) -> None:
        self._negotiation_timer = None
        log.debug("SOCKS connection closed: no request within the negotiation timeout")
        self._negotiation_done()
        if self.local is not None and not self.local.is_closing():
            self.local.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._negotiation_done()
        super().connection_lost(exc)

    def early_data(self, data: bytes) -> None:
        if self._phase == "waiting":
            self._pending_plain += data  # pipelined before our reply
            return
        if not self._negotiating:
            return  # refused or timed out: the connection is closing
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
                    self._negotiation_done()
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
                self._negotiation_done()
                self.connect_to(connect.host, connect.port)
        except socks5.SocksError as error:
            log.info("SOCKS request refused: %s", error)
            self._negotiation_done()
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

    kind = "forward"

    def __init__(self, node: ClientNode, forward: Forward) -> None:
        super().__init__(node)
        self.forward = forward

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.connect_to(self.forward.name, self.forward.port)

    def early_data(self, data: bytes) -> None:
        self._pending_plain += data

    def refuse(self, code: int, reason: str) -> None:
        # No reply to give on a forward: a reset, so the user never sees a clean empty close.
        if self.local is not None and not self.local.is_closing():
            abort_with_reset(self.local)
        super().refuse(code, reason)


class ServiceStream(E2EStream):
    """A stream arriving at a service: e2e handshake first, then connect to the local target."""

    def __init__(self, node: ClientNode, target: HostPort) -> None:
        super().__init__(node.counters, node.stream_done)
        self.node = node
        self.target = target
        self._connecting = False
        self._deadline: asyncio.TimerHandle | None = None

    def arm_handshake_deadline(self, seconds: float) -> None:
        """Reset the stream unless its end-to-end handshake completes within `seconds`."""
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._handshake_expired)

    def _handshake_expired(self) -> None:
        self._deadline = None
        if self.finished or self._connecting:
            return
        self.e2e_failed(
            HandshakeTimeout("no end-to-end handshake completed within the handshake timeout")
        )

    def finish(self, reset: bool, code: int = 0, reason: str = "") -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().finish(reset, code, reason)

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
