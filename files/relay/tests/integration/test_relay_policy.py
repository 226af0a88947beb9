"""Relay admission: allowlist policy, SIGHUP reload without dropping links, handshake rate
limiting per source, bad input, SIGTERM — each with its security event."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from altmesh.keyfile import encode_public_key
from altmesh.protocol import StaticKeyPair

from . import helpers
from .helpers import RELAY, Node, Proc, free_port


@dataclass
class PolicyRelay:
    node: Node
    port: int
    metrics_port: int
    allowed_file: Path
    proc: Proc


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[PolicyRelay]:
    node = Node("relay", tmp_path)
    port, metrics_port = free_port(), free_port()
    allowed_file = tmp_path / "allowed.keys"
    allowed_file.write_text("# nobody yet\n")
    helpers.write_relay_config(
        node,
        port,
        metrics_port,
        policy="allowlist",
        allowed_keys_file=allowed_file,
        handshake_rate=0.5,
        handshake_burst=4,
    )
    proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
    try:
        proc.wait_for_output("altmesh-relay ready")
        yield PolicyRelay(node, port, metrics_port, allowed_file, proc)
    finally:
        proc.stop()


def events(relay: PolicyRelay, name: str) -> list[dict[str, object]]:
    return [e for e in relay.node.security_events() if e["event"] == name]


def test_unknown_key_is_refused_then_allowed_after_sighup_without_dropping_links(
    relay: PolicyRelay,
) -> None:
    first, second = StaticKeyPair.generate(), StaticKeyPair.generate()

    async def scenario() -> None:
        with pytest.raises(ConnectionError):
            await helpers.raw_link_handshake(relay.port, first, relay.node.public)
        relay.allowed_file.write_text(encode_public_key(first.public) + "\n")
        os.kill(relay.proc.pid, signal.SIGHUP)
        await asyncio.sleep(0.5)
        conn, _first, writer = await helpers.raw_link_handshake(
            relay.port, first, relay.node.public
        )
        # Allow a second key too: the first key's link must survive this reload.
        relay.allowed_file.write_text(
            f"{encode_public_key(first.public)}\n{encode_public_key(second.public)}\n"
        )
        os.kill(relay.proc.pid, signal.SIGHUP)
        await asyncio.sleep(0.5)
        second_link = await helpers.raw_link_handshake(relay.port, second, relay.node.public)
        assert not writer.is_closing()
        text = helpers.metrics_text(relay.metrics_port)
        assert helpers.metric_value(text, "altmesh_links") == 2
        writer.close()
        second_link[2].close()
        del conn

    asyncio.run(scenario())
    refused = events(relay, "key_refused")
    assert len(refused) == 1
    assert refused[0].get("peer_key", encode_public_key(first.public)) == encode_public_key(
        first.public
    )
    assert "reloaded" in relay.proc.errors()


def test_handshakes_beyond_the_rate_limit_are_refused_and_logged(relay: PolicyRelay) -> None:
    async def scenario() -> list[bytes]:
        # Seven connections at once from 127.0.0.1: the burst (4) passes, the rest are refused.
        return await asyncio.gather(
            *(helpers.send_raw_and_read(relay.port, b"\x00\x01x", timeout=0.5) for _ in range(7))
        )

    asyncio.run(scenario())
    helpers.wait_until(lambda: bool(events(relay, "rate_limited")), 5, "rate_limited event")
    limited = events(relay, "rate_limited")
    assert str(limited[0]["peer"]).startswith("127.0.0.1:")
    text = helpers.metrics_text(relay.metrics_port)
    assert helpers.metric_value(text, "altmesh_rejections_total") >= 2
    assert helpers.metric_value(text, 'altmesh_security_events_total{event="rate_limited"}') >= 2
    # One line at once for the source, the others in one summary line with their count (the
    # interval ends early when the relay stops).
    assert relay.proc.stop() == 0
    limited = events(relay, "rate_limited")
    assert len(limited) == 2
    assert sum(int(str(e["count"])) for e in limited) >= 2


def test_garbage_instead_of_a_handshake_is_logged_not_crashing(relay: PolicyRelay) -> None:
    asyncio.run(helpers.send_raw_and_read(relay.port, b"\x00\x30" + os.urandom(48), timeout=2))
    helpers.wait_until(lambda: bool(events(relay, "handshake_failed")), 5, "handshake_failed")
    assert relay.proc.popen.poll() is None


def test_sigterm_stops_the_relay_cleanly(relay: PolicyRelay) -> None:
    assert relay.proc.stop(signal.SIGTERM) == 0
    assert "stopped" in relay.proc.errors()


def test_sighup_rotates_the_relay_key_keeping_links_and_the_previous_key(
    relay: PolicyRelay, tmp_path: Path
) -> None:
    from altmesh.keyfile import generate_key_file

    member = StaticKeyPair.generate()
    relay.allowed_file.write_text(encode_public_key(member.public) + "\n")
    os.kill(relay.proc.pid, signal.SIGHUP)
    new_key_file = tmp_path / "relay-new.key"
    new_public = generate_key_file(new_key_file)

    async def scenario() -> None:
        await asyncio.sleep(0.5)
        _conn, _first, old_link = await helpers.raw_link_handshake(
            relay.port, member, relay.node.public
        )
        text = relay.node.config.read_text().replace(
            f'private_key_file = "{relay.node.key_file}"',
            f'private_key_file = "{new_key_file}"\n'
            f'previous_private_key_file = "{relay.node.key_file}"',
        )
        relay.node.config.write_text(text)
        os.kill(relay.proc.pid, signal.SIGHUP)
        await asyncio.sleep(0.5)
        # New key and previous key both accepted; the link made before the rotation stays up.
        _c1, _f1, new_link = await helpers.raw_link_handshake(relay.port, member, new_public)
        _c2, _f2, prev_link = await helpers.raw_link_handshake(
            relay.port, member, relay.node.public
        )
        assert not old_link.is_closing()
        assert helpers.metric_value(helpers.metrics_text(relay.metrics_port), "altmesh_links") == 3
        for writer in (old_link, new_link, prev_link):
            writer.close()

    asyncio.run(scenario())
    rotations = events(relay, "key_rotation")
    assert len(rotations) == 1
    assert rotations[0]["public_key"] == encode_public_key(new_public)


def test_sighup_closes_only_the_links_whose_key_was_removed(relay: PolicyRelay) -> None:
    kept, removed = StaticKeyPair.generate(), StaticKeyPair.generate()
    relay.allowed_file.write_text(
        f"{encode_public_key(kept.public)}\n{encode_public_key(removed.public)}\n"
    )
    os.kill(relay.proc.pid, signal.SIGHUP)

    async def scenario() -> None:
        await asyncio.sleep(0.5)
        links = [
            await helpers.raw_link_handshake(relay.port, key, relay.node.public)
            for key in (kept, removed)
        ]
        assert helpers.metric_value(helpers.metrics_text(relay.metrics_port), "altmesh_links") == 2
        relay.allowed_file.write_text(f"{encode_public_key(kept.public)}\n")
        os.kill(relay.proc.pid, signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert helpers.metric_value(helpers.metrics_text(relay.metrics_port), "altmesh_links") == 1
        for _conn, _first, writer in links:
            writer.close()

    asyncio.run(scenario())
    dropped = [e for e in events(relay, "key_refused") if e["reason"] == "policy_reload"]
    assert [e["peer_key"] for e in dropped] == [encode_public_key(removed.public)]
