"""Memory a peer can make a real relay hold: before authentication (idle connections, pending
handshakes per source and in all) and after it (bytes waiting for receivers that grant no
credit)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from altmesh.protocol import LinkConfig, StaticKeyPair, node_address
from altmesh.protocol import network_prefix as parse_prefix

from . import helpers
from .helpers import RELAY, Node, Proc, free_port

IDLE_CONNECTIONS = 3000
SOURCES = 75


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def start_relay(tmp_path: Path, **relay_options: object) -> tuple[Node, int, int, Proc]:
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    helpers.write_relay_config(node, port, metrics_port)
    helpers.set_options(node.config, "link", handshake_timeout_seconds=60)
    if relay_options:
        helpers.set_options(node.config, "relay", **relay_options)
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    proc.wait_for_output("altmesh-relay ready")
    return node, port, metrics_port, proc


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Node, int, int, Proc]]:
    started = start_relay(
        tmp_path, max_pending_handshakes=10_000, max_pending_handshakes_per_source=100
    )
    try:
        yield started
    finally:
        started[3].stop()


def pending(metrics_port: int) -> float:
    return helpers.metric_value(helpers.metrics_text(metrics_port), "altmesh_pending_handshakes")


def open_idle(port: int, count: int, sources: int, first: int = 1) -> list[socket.socket]:
    """`count` connections that send nothing, spread over `sources` loopback addresses
    (127.0.FIRST.1, 127.0.FIRST+1.1, ...)."""
    sockets = []
    for n in range(count):
        sock = socket.socket()
        sock.bind((f"127.0.{first + n % sources}.1", 0))
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def test_idle_connections_before_the_handshake_hold_no_read_buffer(
    relay: tuple[Node, int, int, Proc], figures: dict[str, str]
) -> None:
    _node, port, metrics_port, proc = relay
    before = rss_mib(proc.pid)
    sockets = open_idle(port, IDLE_CONNECTIONS, SOURCES)
    try:
        helpers.wait_until(
            lambda: pending(metrics_port) == IDLE_CONNECTIONS, 30, "every connection accepted"
        )
        growth = rss_mib(proc.pid) - before
    finally:
        for sock in sockets:
            sock.close()
    per_connection = growth * 1024 / IDLE_CONNECTIONS
    figures["relay RSS per idle pre-handshake connection"] = (
        f"{per_connection:.1f} KiB ({IDLE_CONNECTIONS} connections: +{growth:.0f} MiB)"
    )
    # A 256 KiB read buffer each made this 686 MiB; the state of a link is a few KiB.
    assert growth < 64, f"RSS grew by {growth:.0f} MiB for {IDLE_CONNECTIONS} idle connections"


def test_pending_handshakes_are_limited_per_source_and_in_all(tmp_path: Path) -> None:
    node, port, metrics_port, proc = start_relay(
        tmp_path, max_pending_handshakes=150, max_pending_handshakes_per_source=40
    )

    def refusals() -> tuple[float, float]:
        text = helpers.metrics_text(metrics_port)
        return (
            helpers.metric_value(text, 'altmesh_rejections_total{reason="pending_per_source"}'),
            helpers.metric_value(text, 'altmesh_rejections_total{reason="pending_handshakes"}'),
        )

    try:
        one_source = open_idle(port, 60, 1, first=1)  # 40 pending, 20 refused
        others = open_idle(port, 200, 10, first=2)  # 110 pending (150 in all), 90 refused
        try:
            helpers.wait_until(lambda: pending(metrics_port) == 150, 20, "the global limit")
            helpers.wait_until(lambda: sum(refusals()) == 110, 20, "every refusal")
            assert refusals() == (20, 90)
            # A handshake from elsewhere waits for a slot: refused by the limit, no crash.
            assert asyncio.run(_handshake_refused(port, node.public))
            helpers.wait_until(lambda: refusals() == (20, 91), 5, "the refusal counted")
        finally:
            for sock in one_source + others:
                sock.close()
        # Slots come back when connections go away.
        assert asyncio.run(_handshake_after_close(port, node.public))
        assert proc.popen.poll() is None
    finally:
        proc.stop()


async def _handshake_refused(port: int, relay_public: bytes) -> bool:
    try:
        await helpers.raw_link(port, StaticKeyPair.generate(), relay_public, timeout=3)
    except (ConnectionError, TimeoutError):
        return True
    return False


async def _handshake_after_close(port: int, relay_public: bytes) -> bool:
    for _ in range(50):
        try:
            _conn, _reader, writer = await helpers.raw_link(
                port, StaticKeyPair.generate(), relay_public, timeout=3
            )
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return True
    return False


def test_receivers_that_grant_no_credit_cannot_make_the_relay_buffer_past_its_budget(
    tmp_path: Path, figures: dict[str, str]
) -> None:
    """Pairs of links: a sink that advertises a window of 1 byte per stream, a source that opens
    every stream it may towards it and fills each with the relay's whole window."""
    budget = 32 * 1024 * 1024
    node, port, metrics_port, proc = start_relay(tmp_path, max_buffered_bytes=budget)
    pairs = 4

    async def pair() -> int:
        loop = asyncio.get_running_loop()
        prefix = parse_prefix(helpers.PREFIX)
        sink_key = StaticKeyPair.generate()
        tiny = LinkConfig(
            network=helpers.NETWORK, prefix=ipaddress.IPv6Network(helpers.PREFIX), stream_window=1
        )
        _sink, _sink_reader, sink_writer = await helpers.raw_link(
            port, sink_key, node.public, config=tiny
        )
        source, reader, writer = await helpers.raw_link(port, StaticKeyPair.generate(), node.public)
        streams = [
            source.open_stream(node_address(prefix, sink_key.public), 80) for _ in range(1024)
        ]
        chunk = b"\x33" * 65536
        pushed = 0
        for _round in range(4):
            for stream in streams:
                pushed += source.send_stream_data(stream, chunk)
            writer.write(source.data_to_send(loop.time()))
            await writer.drain()
        with_reads = loop.time() + 3
        while loop.time() < with_reads:  # take the relay's RESETs and WINDOWs
            try:
                data = await asyncio.wait_for(reader.read(1 << 20), 0.2)
            except TimeoutError:
                continue
            if not data:
                break
            source.receive_data(data, loop.time())
            while source.next_event() is not None:
                pass
        writer.close()
        sink_writer.close()
        return pushed

    before = rss_mib(proc.pid)
    try:

        async def all_pairs() -> list[int]:
            return await asyncio.gather(*(pair() for _ in range(pairs)))

        pushed = sum(asyncio.run(all_pairs()))
        growth = rss_mib(proc.pid) - before
        text = helpers.metrics_text(metrics_port)
        shed = helpers.metric_value(text, 'altmesh_rejections_total{reason="buffer_budget"}')
    finally:
        proc.stop()
    figures["relay RSS growth, 4 pairs of no-credit receivers"] = (
        f"+{growth:.0f} MiB with a {budget >> 20} MiB budget ({pushed >> 20} MiB pushed)"
    )
    assert pushed >= pairs * 200 * 1024 * 1024  # each source could send its whole window
    assert shed >= 1
    assert growth < budget / 2**20 + 48, f"relay RSS grew by {growth:.0f} MiB"
    assert any(e["reason"] == "buffer_budget" for e in node.security_events())
