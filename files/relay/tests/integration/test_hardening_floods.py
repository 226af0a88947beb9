"""Floods from authenticated links against a real relay: tiny records that stalled forwarding for
everyone, and records that turned into one log line each.

Each flood comes from a raw link in this process (raw_peers.Flooder) that reconnects whenever the
relay closes it; a legitimate transfer between two other raw links runs at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from altmesh.keyfile import encode_public_key
from altmesh.protocol import ProtocolError, Rekeyed, StaticKeyPair

from . import helpers, raw_peers
from .helpers import RELAY, Node, Proc, free_port

TRANSFER = 20 * 1024 * 1024
FLOOD_SECONDS = 4.0
FIRST_BYTE_DEADLINE = 3.0


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Node, int, int, Proc]]:
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    helpers.write_relay_config(node, port, metrics_port)
    helpers.set_options(node.config, "log", aggregate_seconds=1.0)
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    try:
        proc.wait_for_output("altmesh-relay ready")
        yield node, port, metrics_port, proc
    finally:
        proc.stop()


def lines_about(node: Node, key: bytes) -> list[dict[str, Any]]:
    text = encode_public_key(key)
    return [e for e in node.security_events() if e.get("peer_key") == text]


@pytest.mark.parametrize("flood", sorted(raw_peers.FLOODS))
def test_a_record_flood_closes_the_flooding_link_and_forwarding_goes_on_for_others(
    relay: tuple[Node, int, int, Proc], flood: str, figures: dict[str, str]
) -> None:
    node, port, metrics_port, _proc = relay
    with raw_peers.Flooder(port, node.public, make=raw_peers.FLOODS[flood]) as flooder:
        helpers.wait_until(lambda: flooder.links >= 1, 10, "the flooder's first link")
        result = asyncio.run(raw_peers.transfer(port, node.public, TRANSFER))
        time.sleep(max(0.0, FLOOD_SECONDS - result.total))
    assert result.received == TRANSFER
    assert result.first_byte < FIRST_BYTE_DEADLINE, f"first byte after {result.first_byte:.2f} s"
    figures[f"20 MiB transfer during a {flood} flood"] = (
        f"first byte {result.first_byte * 1000:.0f} ms, all {result.total:.2f} s; "
        f"flooder sent {flooder.sent / 2**20:.1f} MiB on {flooder.links} links"
    )
    # Every link of the flooder was closed for the flood, each with one event...
    helpers.wait_until(
        lambda: any(e["reason"] == "control_flood" for e in lines_about(node, flooder.key.public)),
        5,
        "control_flood event",
    )
    text = helpers.metrics_text(metrics_port)
    closed = helpers.metric_value(text, 'altmesh_rejections_total{reason="control_flood"}')
    assert closed >= flooder.links - 1
    # ... and the log stayed small: events are aggregated per link and interval.
    lines = lines_about(node, flooder.key.public)
    assert len(lines) <= 3 * flooder.links + 2, f"{len(lines)} lines for {flooder.links} links"
    assert node.events.stat().st_size < 2000 * (flooder.links + 2)


def test_handshake_floods_from_one_source_are_one_line_per_interval_with_a_count(
    tmp_path: Path,
) -> None:
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    helpers.write_relay_config(node, port, metrics_port, handshake_rate=1, handshake_burst=2)
    helpers.set_options(node.config, "log", aggregate_seconds=1.0)
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    proc.wait_for_output("altmesh-relay ready")
    attempts = 2000

    async def hammer() -> None:
        for start in range(0, attempts, 100):
            await asyncio.gather(
                *(
                    helpers.send_raw_and_read(port, b"\x00\x01x", timeout=0.2)
                    for _ in range(start, start + 100)
                )
            )

    try:
        asyncio.run(hammer())
        time.sleep(1.5)  # one aggregation interval
        text = helpers.metrics_text(metrics_port)
        refused = helpers.metric_value(text, 'altmesh_rejections_total{reason="rate_limited"}')
    finally:
        assert proc.stop() == 0
    limited = [e for e in node.security_events() if e["event"] == "rate_limited"]
    assert refused >= attempts - 10
    assert sum(int(e["count"]) for e in limited) == refused
    assert len(limited) <= 20, f"{len(limited)} lines for one source"


def test_the_log_grows_at_most_its_global_bound_and_says_what_it_dropped(
    tmp_path: Path,
) -> None:
    """Faults from many sources (127.0.x.y): every one is a group of its own, so only the global
    bound (max_events_per_second, max_events_burst) stops them."""
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    helpers.write_relay_config(node, port, metrics_port)
    helpers.set_options(
        node.config, "log", aggregate_seconds=1.0, max_events_per_second=5, max_events_burst=20
    )
    helpers.set_options(node.config, "relay", max_pending_handshakes_per_source=1000)
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    proc.wait_for_output("altmesh-relay ready")
    sources = 300

    async def garbage_from(address: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        writer.write(b"\x00\x86" + b"\x00" * 134)  # a message 1 that fails to decrypt
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(reader.read(), 2)
        writer.close()

    async def many() -> None:
        await asyncio.gather(
            *(garbage_from(f"127.0.{1 + n // 250}.{1 + n % 250}") for n in range(sources))
        )

    try:
        asyncio.run(many())
        time.sleep(1.5)
        text = helpers.metrics_text(metrics_port)
        failed = helpers.metric_value(
            text, 'altmesh_security_events_total{event="handshake_failed"}'
        )
        dropped = helpers.metric_value(text, "altmesh_security_events_dropped_total")
    finally:
        assert proc.stop() == 0
    events = node.security_events()
    written = [e for e in events if e["event"] == "handshake_failed"]
    reports = [e for e in events if e["event"] == "events_dropped"]
    assert failed == sources
    assert len(written) <= 20 + 5 * 10  # the burst, then the rate, over well under 10 s
    assert reports and sum(int(e["count"]) for e in reports) == dropped == sources - len(written)


def test_a_link_that_rekeys_back_to_back_is_closed_and_logged_in_a_few_lines(
    relay: tuple[Node, int, int, Proc],
) -> None:
    """Each rekey completes (the peer answers the relay's REKEY_REPLY), and the next starts at
    once: 14,480 rekey events in 30 s before the limits."""
    node, port, _metrics_port, _proc = relay
    key = StaticKeyPair.generate()

    async def rekey_loop() -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        conn, reader, writer = await helpers.raw_link(port, key, node.public)
        host, local_port = writer.get_extra_info("sockname")[:2]
        rekeys = 0
        try:
            async with asyncio.timeout(20):
                while True:
                    conn.rekey(loop.time())
                    writer.write(conn.data_to_send(loop.time()))
                    data = await reader.read(65536)
                    if not data:
                        break
                    conn.receive_data(data, loop.time())
                    while (event := conn.next_event()) is not None:
                        rekeys += isinstance(event, Rekeyed)
                    writer.write(conn.data_to_send(loop.time()))
        except (ConnectionError, ProtocolError):
            pass
        finally:
            writer.close()
        return rekeys, f"{host}:{local_port}"

    rekeys, peer = asyncio.run(rekey_loop())
    assert rekeys >= 10  # the burst of the limit passed

    def lines() -> list[dict[str, Any]]:
        return [e for e in node.security_events() if e.get("peer") == peer]

    helpers.wait_until(
        lambda: any(e["reason"] == "control_flood" for e in lines()), 5, "control_flood event"
    )

    def rekey_lines() -> list[dict[str, Any]]:
        return [e for e in lines() if e["event"] == "rekey"]

    # The interval's summary line comes when the interval (1 s) has ended and the log's timer
    # runs (every second): wait for it rather than for a fixed time (a loaded machine is late).
    helpers.wait_until(
        lambda: sum(int(e["count"]) for e in rekey_lines()) >= rekeys - 1,
        10,
        f"rekey lines counting {rekeys - 1} rekeys",
    )
    assert len(rekey_lines()) <= 2, rekey_lines()
