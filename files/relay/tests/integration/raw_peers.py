"""Raw link peers of a real relay, in the test (or benchmark) process: a legitimate transfer
between two attached links, and hostile peers that flood records, each in a thread of its own
that reconnects whenever the relay closes its link.

    source link --stream--> relay --stream--> sink link      (transfer)
    flooder link ==records==> relay                          (flood)
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from altmesh.protocol import (
    LinkConnection,
    LocalProtocolError,
    StaticKeyPair,
    StreamData,
    StreamReset,
    node_address,
)
from altmesh.protocol import network_prefix as parse_prefix
from altmesh.protocol import records as R

from . import helpers


@dataclass
class TransferResult:
    first_byte: float  # seconds from the stream's OPEN to its first byte at the sink
    total: float  # seconds until the sink had every byte
    received: int


async def _pump_events(conn: LinkConnection) -> list[object]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


async def transfer(
    port: int, relay_public: bytes, total: int, timeout: float = 120.0
) -> TransferResult:
    """`total` bytes from a source link to a sink link through the relay (flow-controlled)."""
    loop = asyncio.get_running_loop()
    prefix = parse_prefix(helpers.PREFIX)
    sink_key, source_key = StaticKeyPair.generate(), StaticKeyPair.generate()
    sink, sink_reader, sink_writer = await helpers.raw_link(port, sink_key, relay_public)
    source, source_reader, source_writer = await helpers.raw_link(port, source_key, relay_public)
    chunk = b"\x5a" * 65536
    received = 0
    first_byte: float | None = None
    done = asyncio.Event()

    async def sink_side() -> None:
        nonlocal received, first_byte
        while received < total:
            data = await sink_reader.read(1 << 20)
            if not data:
                raise ConnectionError("the relay closed the sink's link")
            sink.receive_data(data, loop.time())
            for event in await _pump_events(sink):
                if isinstance(event, StreamData):
                    if first_byte is None:
                        first_byte = time.perf_counter()
                    received += len(event.data)
                    sink.acknowledge(event.stream_id, len(event.data))
            sink_writer.write(sink.data_to_send(loop.time()))
        done.set()

    async def source_side() -> None:
        stream = source.open_stream(node_address(prefix, sink_key.public), 80)
        sent = 0
        while sent < total:
            accepted = source.send_stream_data(stream, chunk[: total - sent])
            sent += accepted
            source_writer.write(source.data_to_send(loop.time()))
            await source_writer.drain()
            if accepted == 0:
                data = await source_reader.read(1 << 20)
                if not data:
                    raise ConnectionError("the relay closed the source's link")
                source.receive_data(data, loop.time())
                for event in await _pump_events(source):
                    if isinstance(event, StreamReset):
                        raise ConnectionError(f"the relay reset the transfer: {event.reason}")
        await done.wait()

    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(sink_side(), source_side())
    finally:
        sink_writer.close()
        source_writer.close()
    finished = time.perf_counter()
    assert first_byte is not None
    return TransferResult(first_byte - started, finished - started, received)


# ---------------------------------------------------------------------------- flooders


def _seal(conn: LinkConnection, plaintext: bytes) -> bytes:
    """`conn`'s next transport message carrying `plaintext` as is (a hostile peer)."""
    now = time.monotonic()
    conn._sender.seal_queued(now)
    conn._sender.seal(plaintext, now)
    return conn.data_to_send(now)


def _packed(record: bytes) -> bytes:
    return record * (65519 // len(record))


def ping_flood(conn: LinkConnection) -> Callable[[], bytes]:
    plaintext = _packed(R.encode(R.PingRecord(b"pingping")))
    return lambda: _seal(conn, plaintext)


def pong_flood(conn: LinkConnection) -> Callable[[], bytes]:
    plaintext = _packed(R.encode(R.PongRecord(b"pongpong")))
    return lambda: _seal(conn, plaintext)


def window_flood(conn: LinkConnection) -> Callable[[], bytes]:
    """WINDOW records for a stream the flooder opened and reset at once."""
    address = node_address(parse_prefix(helpers.PREFIX), StaticKeyPair.generate().public)
    stream = conn.open_stream(address, 80)
    conn.reset_stream(stream, 1, "gone")
    opening = conn.data_to_send(time.monotonic())
    plaintext = _packed(R.encode(R.WindowRecord(stream, 1)))
    first = [opening]

    def next_bytes() -> bytes:
        if first:
            return first.pop() + _seal(conn, plaintext)
        return _seal(conn, plaintext)

    return next_bytes


def tiny_data_flood(conn: LinkConnection, sink: bytes) -> Callable[[], bytes]:
    """1-byte DATA records towards the flooder's own sink, within every stream's credit: not a
    protocol fault, just the most work per byte a peer can ask for (the work budget's case)."""
    address = node_address(parse_prefix(helpers.PREFIX), sink)
    record = R.DataRecord(0, b"x")
    per_message = 65519 // len(R.encode(record))
    state: dict[str, int] = {"stream": 0, "credit": 0}

    def next_bytes() -> bytes:
        opening = b""
        if state["credit"] < per_message:
            state["stream"] = conn.open_stream(address, 80)
            state["credit"] = conn.stream_send_capacity(state["stream"])
            opening = conn.data_to_send(time.monotonic())
        state["credit"] -= per_message
        one = R.encode(R.DataRecord(state["stream"], b"x"))
        return opening + _seal(conn, one * per_message)

    return next_bytes


FLOODS: dict[str, Callable[[LinkConnection], Callable[[], bytes]]] = {
    "ping": ping_flood,
    "unsolicited_pong": pong_flood,
    "window_for_reset_stream": window_flood,
}
# Floods that need a sink link of the flooder's own: make(conn, sink_public_key).
SINK_FLOODS: dict[str, Callable[[LinkConnection, bytes], Callable[[], bytes]]] = {
    "tiny_data": tiny_data_flood,
}


@dataclass
class Flooder:
    """Floods the relay from one key, reconnecting whenever the relay closes the link."""

    port: int
    relay_public: bytes
    make: Callable[[LinkConnection], Callable[[], bytes]] | None = None
    make_with_sink: Callable[[LinkConnection, bytes], Callable[[], bytes]] | None = None
    links: int = 0
    sent: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    key: StaticKeyPair = field(default_factory=StaticKeyPair.generate)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Flooder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._one_link()
            except (OSError, ConnectionError, TimeoutError, LocalProtocolError):
                time.sleep(0.05)  # closed by the relay, refused, or out of streams: again

    def _one_link(self) -> None:
        sinks: list[socket.socket] = []
        if self.make_with_sink is not None:
            sink_key = StaticKeyPair.generate()
            _sink, sink_sock = asyncio.run(self._connect(sink_key))
            sinks.append(sink_sock)
            conn, sock = asyncio.run(self._connect(self.key))
            produce = self.make_with_sink(conn, sink_key.public)
        else:
            assert self.make is not None
            conn, sock = asyncio.run(self._connect(self.key))
            produce = self.make(conn)
        self.links += 1
        try:
            while not self.stop.is_set():
                data = produce()
                sock.settimeout(2.0)
                sock.sendall(data)
                self.sent += len(data)
                for drained in (sock, *sinks):  # read what the relay sends, never process it
                    _drain(drained)
        finally:
            for each in (sock, *sinks):
                each.close()

    async def _connect(self, key: StaticKeyPair) -> tuple[LinkConnection, socket.socket]:
        conn, _reader, writer = await helpers.raw_link(self.port, key, self.relay_public)
        sock = writer.transport.get_extra_info("socket")
        duplicate = socket.socket(fileno=os.dup(sock.fileno()))  # outlives this event loop
        writer.transport.abort()
        duplicate.setblocking(True)
        return conn, duplicate


def _drain(sock: socket.socket) -> None:
    """Read whatever is there without waiting (so the relay's writes to us never stall)."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
