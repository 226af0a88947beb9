"""A connection that never completes its handshake is closed by the relay once the handshake
timeout has run from accept (the responder arms it at accept time), and it is logged and
counted."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import helpers
from .helpers import RELAY, Node, Proc, free_port

TIMEOUT = 1.0


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Node, int, int]]:
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    helpers.write_relay_config(node, port, metrics_port)
    text = node.config.read_text()
    node.config.write_text(
        text.replace("[link]\n", f"[link]\nhandshake_timeout_seconds = {TIMEOUT}\n")
    )
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    try:
        proc.wait_for_output("altmesh-relay ready")
        yield node, port, metrics_port
    finally:
        proc.stop()


def closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the peer closed `sock` (end of file or reset), None if not within limit."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return time.monotonic() - start
    except TimeoutError:
        return None
    assert data == b"", "the relay sent bytes to a silent connection"
    return time.monotonic() - start


def timeouts(node: Node) -> list[dict[str, object]]:
    return [
        e
        for e in node.security_events()
        if e["event"] == "handshake_failed" and e["reason"] == "handshake_timeout"
    ]


def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    relay: tuple[Node, int, int],
) -> None:
    node, port, metrics_port = relay
    with socket.create_connection(("127.0.0.1", port)) as silent:
        local = silent.getsockname()
        waited = closed_after(silent, TIMEOUT + 5.0)
    assert waited is not None, "the relay kept a silent connection open"
    # Armed at accept: closed after the timeout, not before, and not much later.
    assert TIMEOUT * 0.8 <= waited <= TIMEOUT + 2.0, waited
    helpers.wait_until(lambda: len(timeouts(node)) == 1, 5, "handshake_timeout event")
    assert timeouts(node)[0]["peer"] == f"{local[0]}:{local[1]}"
    text = helpers.metrics_text(metrics_port)
    assert helpers.metric_value(text, 'altmesh_rejections_total{reason="handshake_timeout"}') == 1
    assert helpers.metric_value(text, 'altmesh_handshakes_total{result="failed"}') == 1


def test_a_connection_that_stops_mid_handshake_is_closed_too(
    relay: tuple[Node, int, int],
) -> None:
    """A first message cut short (half of the 136 framed bytes) leaves the handshake waiting:
    the same timeout, counted from accept, ends it."""
    node, port, _metrics_port = relay
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"\x00\x86" + b"\x00" * 60)
        waited = closed_after(stalled, TIMEOUT + 5.0)
    assert waited is not None and waited <= TIMEOUT + 2.0, waited
    helpers.wait_until(lambda: len(timeouts(node)) == 1, 5, "handshake_timeout event")
