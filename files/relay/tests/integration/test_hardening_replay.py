"""The replay store of a real relay stays bounded: handshake timestamps outside the freshness
window are refused, and keys whose last timestamp left the window are forgotten, without a
recorded handshake ever being accepted twice."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from altmesh.protocol import LinkConnection, StaticKeyPair, TimestampIssuer

from . import helpers
from .helpers import RELAY, Node, Proc, free_port

# Wide enough that KEYS handshakes fit in it on a loaded 2-core machine (each prunes what left it).
FRESHNESS = 20.0
KEYS = 300


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Node, int, Proc]]:
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    helpers.write_relay_config(node, port, metrics_port)
    helpers.set_options(node.config, "node", handshake_freshness_seconds=FRESHNESS)
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    try:
        proc.wait_for_output("altmesh-relay ready")
        yield node, port, proc
    finally:
        proc.stop()


async def handshake(
    port: int, relay_public: bytes, key: StaticKeyPair, clock_offset: float
) -> bool:
    """One link handshake from a node whose wall clock is `clock_offset` seconds off."""
    loop = asyncio.get_running_loop()
    issuer = TimestampIssuer(lambda: time.time() + clock_offset)
    conn = LinkConnection.initiator(helpers.link_config(), key, relay_public, timestamps=issuer)
    return await _complete(port, conn, loop)


async def _complete(port: int, conn: LinkConnection, loop: asyncio.AbstractEventLoop) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        conn.start(loop.time())
        writer.write(conn.data_to_send(loop.time()))
        data = await asyncio.wait_for(reader.read(65536), 5)
        if not data:
            return False
        conn.receive_data(data, loop.time())
        return conn.established
    except (ConnectionError, TimeoutError):
        return False
    finally:
        writer.close()


async def replay(port: int, message: bytes) -> bytes:
    return await helpers.send_raw_and_read(port, message, timeout=2)


def stored_keys(node: Node) -> int:
    with sqlite3.connect(f"file:{node.state / 'state.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM handshake_timestamps").fetchone()[0])


def test_handshakes_from_a_clock_outside_the_freshness_window_are_refused(
    relay: tuple[Node, int, Proc],
) -> None:
    node, port, _proc = relay
    key = StaticKeyPair.generate()
    assert not asyncio.run(handshake(port, node.public, key, -3 * FRESHNESS))
    assert not asyncio.run(handshake(port, node.public, key, +3 * FRESHNESS))
    assert asyncio.run(handshake(port, node.public, key, -FRESHNESS / 4))  # skew within it
    details = [
        str(e.get("detail")) for e in node.security_events() if e["event"] == "handshake_replayed"
    ]
    assert any("older than the responder's freshness window" in d for d in details)
    assert any("ahead of the responder's clock" in d for d in details)


def test_keys_whose_timestamps_left_the_window_are_forgotten_and_their_replays_still_refused(
    relay: tuple[Node, int, Proc],
) -> None:
    node, port, _proc = relay

    async def many() -> list[bytes]:
        firsts = []
        for _ in range(KEYS):
            _conn, first, writer = await helpers.raw_link_handshake(
                port, StaticKeyPair.generate(), node.public
            )
            writer.close()
            firsts.append(first)
        return firsts

    started = time.monotonic()
    firsts = asyncio.run(many())
    took = time.monotonic() - started
    assert took < FRESHNESS, f"{KEYS} handshakes took {took:.1f} s, longer than the window"
    # The relay stores a key once its handshake is answered; the last write may trail the answer.
    helpers.wait_until(lambda: stored_keys(node) == KEYS, 10, f"{KEYS} keys stored")
    time.sleep(FRESHNESS + 1)
    # The next handshake prunes: only its own key is left.
    assert asyncio.run(handshake(port, node.public, StaticKeyPair.generate(), 0.0))
    helpers.wait_until(lambda: stored_keys(node) == 1, 10, "old keys forgotten")
    # A recorded message 1 of a forgotten key is older than the window: refused all the same.
    before = sum(1 for e in node.security_events() if e["event"] == "handshake_replayed")
    answer = asyncio.run(replay(port, firsts[0]))
    assert answer == b""
    helpers.wait_until(
        lambda: (
            sum(1 for e in node.security_events() if e["event"] == "handshake_replayed")
            == before + 1
        ),
        5,
        "the replay refused",
    )
