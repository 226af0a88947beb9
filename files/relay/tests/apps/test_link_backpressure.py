"""Write backpressure in the link adapter: a peer that sends requests and never reads cannot grow
our write buffer without bound (altmesh.net.link pauses reading while writing is paused)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from altmesh.net import link as netlink
from altmesh.net.link import LinkTransport
from altmesh.net.loop import run
from altmesh.protocol import (
    Event,
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    ProtocolError,
    StaticKeyPair,
    StreamData,
    TimestampIssuer,
    network_prefix,
)
from altmesh.protocol import records as R

PREFIX = network_prefix("fd12:3456:789a::/48")
FLOOD_BYTES = 48 * 1024 * 1024
# High-water mark, probe limit and the answers to one 256 KiB read (an echo answers byte for
# byte), with room for a second read.
BOUND = netlink.READ_PROBE_MAX_BUFFER + 2 * netlink.READ_BUFFER_SIZE + 64 * 1024


def link_config(**overrides: Any) -> LinkConfig:
    return LinkConfig(network="testnet", prefix=PREFIX, **overrides)


class EchoHandler:
    """A service that answers every request at once: each byte received on a stream is sent
    back on it (the peer granted a 1 GiB window, so the core takes all of it)."""

    def __init__(self) -> None:
        self.links: list[LinkTransport[None]] = []
        self.failures: list[str] = []
        self.received = 0

    def link_event(self, link: LinkTransport[None], event: Event) -> None:
        if isinstance(event, StreamData):
            self.received += len(event.data)
            link.conn.acknowledge(event.stream_id, len(event.data))
            link.conn.send_stream_data(event.stream_id, event.data)
            link.kick()

    def link_failed(self, link: LinkTransport[None], error: ProtocolError) -> None:
        self.failures.append(error.kind)

    def link_lost(self, link: LinkTransport[None], reason: str) -> None:
        pass

    def link_writable(self, link: LinkTransport[None]) -> None:
        pass


def flooding_peer(port: int, server_public: bytes, stop: threading.Event) -> dict[str, int]:
    """A raw socket peer: link handshake, then DATA requests on one stream as fast as the
    socket takes them, and it never reads again. Returns how many bytes it got sent."""
    key = StaticKeyPair.generate()
    window = 2**30  # it grants us all the credit we could want...
    conn = LinkConnection.initiator(
        link_config(stream_window=window, link_window=2 * window),
        key,
        server_public,
        timestamps=TimestampIssuer(time.time),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # ...and reads nothing
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.2)
    conn.start(time.monotonic())
    sock.sendall(conn.data_to_send(time.monotonic()))
    while not conn.established:
        conn.receive_data(sock.recv(65536), time.monotonic())
    while conn.next_event() is not None:
        pass
    stream_id = conn.open_stream(conn.remote_address, 7)
    sock.sendall(conn.data_to_send(time.monotonic()))
    request = b"R" * 60_000
    sent = 0
    pending = b""
    while sent < FLOOD_BYTES and not stop.is_set():
        if not pending:
            # Sealed directly: the peer does not wait for our WINDOW records (it never reads
            # them) and sends as much as the responder's window allows.
            now = time.monotonic()
            conn._sender.seal(R.encode(R.DataRecord(stream_id, request)), now)
            pending = conn.data_to_send(now)
        try:
            written = sock.send(pending)
        except TimeoutError:
            continue
        pending = pending[written:]
        sent += written
    sock.close()
    return {"sent": sent}


def flood(check: Callable[[LinkTransport[None]], int]) -> tuple[int, int, EchoHandler]:
    """Run the flood against an echoing responder; returns (largest write buffer seen, bytes
    the peer got sent, handler)."""
    server_key = StaticKeyPair.generate()
    handler = EchoHandler()

    async def main() -> tuple[int, int]:
        def make() -> LinkTransport[None]:
            conn = LinkConnection.responder(
                # A request may be 64 MiB ahead of our acknowledgement: no overrun in the test.
                link_config(stream_window=64 * 2**20, link_window=128 * 2**20),
                [server_key],
                authorize=lambda _key: True,
                replay_store=MemoryReplayStore(),
                timestamps=TimestampIssuer(time.time),
            )
            transport = LinkTransport(conn, handler, None)
            handler.links.append(transport)
            return transport

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # accepted sockets inherit
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(make, sock=listener)
        stop = threading.Event()
        peer = loop.run_in_executor(None, flooding_peer, port, server_key.public, stop)
        largest = 0
        deadline = loop.time() + 3.0
        try:
            while not peer.done() and loop.time() < deadline:
                await asyncio.sleep(0.01)
                for link in handler.links:
                    largest = max(largest, check(link))
        finally:
            stop.set()
            result = await peer
            server.close()
            for link in handler.links:
                link.abort("test over")
        return largest, result["sent"]

    largest, sent = run(main())
    return largest, sent, handler


def write_buffer(link: LinkTransport[None]) -> int:
    return link.transport.get_write_buffer_size() if link.transport is not None else 0


def test_a_peer_that_never_reads_cannot_grow_our_write_buffer_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Frequent probe reads, so the buffer reaches the probe limit within the test: the bound
    # holds also then (without backpressure the buffer grows to the whole flood, 48 MiB).
    monkeypatch.setattr(netlink, "READ_PROBE_INTERVAL", 0.02)
    largest, sent, handler = flood(write_buffer)
    assert handler.failures == []
    assert handler.received > 1024 * 1024  # the echo did answer, until reading was paused
    assert largest >= netlink.READ_PROBE_MAX_BUFFER - 2 * netlink.READ_BUFFER_SIZE  # probes ran
    assert largest < BOUND, f"write buffer reached {largest} bytes (bound {BOUND})"
    # The peer was held back: it could not push its whole flood into our socket.
    assert sent < FLOOD_BYTES


@pytest.mark.parametrize("interval", [0.2])
def test_reading_resumes_once_the_peer_reads_again(
    interval: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pause_writing/resume_writing pause and resume reading (and the probe lets one read in)."""

    class FakeTransport:
        def __init__(self) -> None:
            self.reading = True
            self.buffered = 0

        def pause_reading(self) -> None:
            self.reading = False

        def resume_reading(self) -> None:
            self.reading = True

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return self.buffered

    monkeypatch.setattr(netlink, "READ_PROBE_INTERVAL", interval)

    async def main() -> list[bool]:
        conn = LinkConnection.responder(
            link_config(),
            [StaticKeyPair.generate()],
            authorize=lambda _key: True,
            replay_store=MemoryReplayStore(),
            timestamps=TimestampIssuer(time.time),
        )
        link = LinkTransport(conn, EchoHandler(), None)
        fake = FakeTransport()
        link.transport = fake  # type: ignore[assignment]
        seen = []
        link.pause_writing()
        seen.append(fake.reading)  # paused
        await asyncio.sleep(interval * 1.5)
        seen.append(fake.reading)  # the probe let one read in
        link.buffer_updated(0)
        seen.append(fake.reading)  # and paused again after it
        fake.buffered = netlink.READ_PROBE_MAX_BUFFER
        await asyncio.sleep(interval * 1.5)
        seen.append(fake.reading)  # no probe while the buffer is at its limit
        link.resume_writing()
        seen.append(fake.reading)
        return seen

    assert asyncio.run(main()) == [False, True, False, False, True]
