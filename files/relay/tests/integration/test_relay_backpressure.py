"""A destination node that grants plenty of credit and never reads cannot make the relay buffer
what a source sends it: the relay stops forwarding while that link's write buffer is above its
high-water mark (and so stops returning credit to the source)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from altmesh.protocol import (
    HandshakeComplete,
    LinkConfig,
    LinkConnection,
    StaticKeyPair,
    node_address,
)
from altmesh.protocol import network_prefix as parse_prefix

from . import helpers
from .helpers import RELAY, Node, Proc, free_port

SEND_LIMIT = 96 * 1024 * 1024  # what the source tries to push
SECONDS = 4.0


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Node, int, Proc]]:
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    helpers.write_relay_config(node, port, metrics_port)
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    try:
        proc.wait_for_output("altmesh-relay ready")
        yield node, port, proc
    finally:
        proc.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def attach(
    port: int, key: StaticKeyPair, relay_public: bytes, config: LinkConfig, *, rcvbuf: int = 0
) -> tuple[LinkConnection, asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    conn = LinkConnection.initiator(config, key, relay_public, timestamps=helpers.TIMESTAMPS)
    conn.start(loop.time())
    async with asyncio.timeout(10):
        while True:
            writer.write(conn.data_to_send(loop.time()))
            conn.receive_data(await reader.read(65536), loop.time())
            events = []
            while (event := conn.next_event()) is not None:
                events.append(event)
            if any(isinstance(e, HandshakeComplete) for e in events):
                writer.write(conn.data_to_send(loop.time()))
                return conn, reader, writer


def test_a_destination_that_never_reads_cannot_make_the_relay_buffer_a_source(
    relay: tuple[Node, int, Proc],
) -> None:
    node, port, proc = relay
    prefix = parse_prefix(helpers.PREFIX)
    source_key, sink_key = StaticKeyPair.generate(), StaticKeyPair.generate()
    window = 2**30

    async def run() -> int:
        loop = asyncio.get_running_loop()
        # The sink grants a 1 GiB window, then reads nothing (its StreamReader stops reading
        # once its own small buffer is full; the kernel buffer is small too).
        sink_config = LinkConfig(
            network=helpers.NETWORK,
            prefix=ipaddress.IPv6Network(helpers.PREFIX),
            stream_window=window,
            link_window=2 * window,
        )
        _sink, _sink_reader, sink_writer = await attach(
            port, sink_key, node.public, sink_config, rcvbuf=4096
        )
        conn, reader, writer = await attach(port, source_key, node.public, helpers.link_config())
        stream = conn.open_stream(node_address(prefix, sink_key.public), 80)
        chunk = b"\x5a" * 65536
        sent = 0
        deadline = loop.time() + SECONDS
        while sent < SEND_LIMIT and loop.time() < deadline:
            accepted = conn.send_stream_data(stream, chunk)
            sent += accepted
            writer.write(conn.data_to_send(loop.time()))
            await writer.drain()
            if accepted < len(chunk):  # out of credit: wait for the relay's WINDOW
                try:
                    data = await asyncio.wait_for(reader.read(65536), 0.2)
                except TimeoutError:
                    continue
                conn.receive_data(data, loop.time())
                while conn.next_event() is not None:
                    pass
        writer.close()
        sink_writer.close()
        return sent

    before = rss_mib(proc.pid)
    sent = asyncio.run(run())
    growth = rss_mib(proc.pid) - before
    # Without backpressure the relay forwards (and returns credit for) all of it: 96 MiB held.
    assert sent < 24 * 1024 * 1024, f"the source pushed {sent} bytes into the relay"
    assert growth < 32, f"relay RSS grew by {growth:.0f} MiB"
    assert proc.popen.poll() is None
