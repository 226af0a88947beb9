"""Memory of a real relay: idle, with many connections that never complete a handshake, with many
established idle links, and with pairs of links whose receivers grant no credit (what the global
buffer budget bounds). Printed beside the idle relay's own RSS.

Usage: python bench/bench_memory.py [--connections 2000] [--links 500] [--pairs 4]
Exits 1 if the relay fails; every process it starts is stopped by PID, also on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "files/relay"))  # for tests.integration

from altmesh.protocol import LinkConfig, StaticKeyPair, node_address  # noqa: E402
from altmesh.protocol import network_prefix as parse_prefix  # noqa: E402
from tests.integration import helpers  # noqa: E402
from tests.integration.helpers import RELAY, Node, Proc, free_port  # noqa: E402

BUDGET = 64 * 2**20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settle(pid: int) -> int:
    time.sleep(1.0)
    return rss_kib(pid)


def pending(metrics_port: int) -> float:
    return helpers.metric_value(helpers.metrics_text(metrics_port), "altmesh_pending_handshakes")


def idle_connections(port: int, metrics_port: int, count: int) -> list[socket.socket]:
    sockets = []
    for n in range(count):
        sock = socket.socket()
        sock.bind((f"127.0.{1 + n % 200}.2", 0))
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    helpers.wait_until(lambda: pending(metrics_port) == count, 60, "connections accepted")
    return sockets


async def idle_links(port: int, relay: Node, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        key = StaticKeyPair.generate()
        _conn, _reader, writer = await helpers.raw_link(port, key, relay.public)
        writers.append(writer)
    return writers


async def no_credit_pairs(port: int, relay: Node, pairs: int) -> int:
    prefix = parse_prefix(helpers.PREFIX)
    tiny = LinkConfig(
        network=helpers.NETWORK, prefix=ipaddress.IPv6Network(helpers.PREFIX), stream_window=1
    )
    pushed = 0
    writers = []
    loop = asyncio.get_running_loop()
    for _ in range(pairs):
        sink_key = StaticKeyPair.generate()
        _sink, _sr, sink_writer = await helpers.raw_link(port, sink_key, relay.public, config=tiny)
        source_key = StaticKeyPair.generate()
        source, _reader, writer = await helpers.raw_link(port, source_key, relay.public)
        streams = [
            source.open_stream(node_address(prefix, sink_key.public), 80) for _ in range(1024)
        ]
        for _round in range(4):
            for stream in streams:
                pushed += source.send_stream_data(stream, b"\x33" * 65536)
            writer.write(source.data_to_send(loop.time()))
            await writer.drain()
        writers += [writer, sink_writer]
    await asyncio.sleep(3)
    for writer in writers:
        writer.close()
    return pushed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        relay = Node("relay", workdir)
        port, metrics_port = free_port(), free_port()
        helpers.write_relay_config(relay, port, metrics_port)
        helpers.set_options(relay.config, "link", handshake_timeout_seconds=60)
        helpers.set_options(
            relay.config,
            "relay",
            max_pending_handshakes=args.connections + 10,
            max_pending_handshakes_per_source=args.connections,
            max_buffered_bytes=BUDGET,
        )
        proc = Proc("relay", [*RELAY, "--config", str(relay.config)], workdir)

        def stop(_signum: int, _frame: FrameType | None) -> None:
            proc.stop()
            sys.exit(143)

        signal.signal(signal.SIGTERM, stop)
        try:
            proc.wait_for_output("altmesh-relay ready")
            pid = proc.pid
            idle = settle(pid)
            print(f"relay RSS, idle: {idle / 1024:.1f} MiB")
            sockets = idle_connections(port, metrics_port, args.connections)
            with_connections = settle(pid)
            for sock in sockets:
                sock.close()
            per = (with_connections - idle) / args.connections
            print(
                f"  {args.connections} connections before their handshake: "
                f"{with_connections / 1024:.1f} MiB, {per:.1f} KiB each "
                "(a 256 KiB read buffer each before: ~256 KiB)"
            )
            time.sleep(1)
            base = settle(pid)

            async def links() -> int:
                writers = await idle_links(port, relay, args.links)
                rss = settle(pid)
                for writer in writers:
                    writer.close()
                return rss

            with_links = asyncio.run(links())
            per = (with_links - base) / args.links
            print(
                f"  {args.links} established idle links: {with_links / 1024:.1f} MiB, "
                f"{per:.1f} KiB each"
            )
            base = settle(pid)
            pushed = asyncio.run(no_credit_pairs(port, relay, args.pairs))
            peak = rss_kib(pid)
            text = helpers.metrics_text(metrics_port)
            shed = helpers.metric_value(text, 'altmesh_rejections_total{reason="buffer_budget"}')
            print(
                f"  {args.pairs} pairs of no-credit receivers ({pushed >> 20} MiB pushed, budget "
                f"{BUDGET >> 20} MiB): {peak / 1024:.1f} MiB, +{(peak - base) / 1024:.0f} MiB, "
                f"{shed:.0f} streams reset for the budget (without it: ~256 MiB held per pair)"
            )
        finally:
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
