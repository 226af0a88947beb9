"""Stream-slot exhaustion, with real processes: named (signed alt.), a relay (open policy), a
service (`altmesh serve` in front of data_server.py), a client (`altmesh up` with a forward), and
an attacker in the test: a raw link with a key of its own that opens every stream the relay lets
it open towards the service, never sends a byte, and reopens each one the relay resets.

Without the fixes every one of the service's 1024 stream slots was the attacker's, and each
legitimate forwarded transfer failed with 0 bytes and a clean close.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from altmesh.keyfile import encode_public_key
from altmesh.protocol import (
    StaticKeyPair,
    StreamLimitReached,
    StreamReset,
    node_address,
)
from altmesh.protocol import network_prefix as parse_prefix
from altmesh.testing.named import NamedServer

from . import helpers
from .data_server import source_sha256
from .helpers import ALTMESH, HERE, PYTHON, RELAY, Node, Proc, free_port

SERVICE_HANDSHAKE_TIMEOUT = 2.0
TRANSFERS = 80
TRANSFER_BYTES = 64 * 1024
NEW_STREAM_DEADLINE = 3.0  # each legitimate transfer must succeed within this


@dataclass
class Net:
    workdir: Path
    relay: Node
    relay_port: int
    metrics_port: int
    service: Node
    client: Node
    forward_port: int
    offline_forward_port: int
    procs: dict[str, Proc]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    workdir = tmp_path_factory.mktemp("streams")
    prefix = parse_prefix(helpers.PREFIX)
    relay, service, client, offline = (
        Node(n, workdir) for n in ("relay", "service", "client", "offline")
    )
    records = []
    for node, name in ((service, "data"), (offline, "offline")):
        address = node_address(prefix, node.public)
        records += [
            f"{name} 300 IN AAAA {address}",
            f'{name} 300 IN TXT "altmesh-key={node.public_b64}"',
        ]
    named = NamedServer.start(workdir / "named", records=records)
    procs: dict[str, Proc] = {}
    try:
        data_port = free_port()
        procs["data_server"] = Proc(
            "data_server", [PYTHON, str(HERE / "data_server.py"), str(data_port)], workdir
        )
        procs["data_server"].wait_for_output("ready")
        relay_port, metrics_port = free_port(), free_port()
        helpers.write_relay_config(relay, relay_port, metrics_port)
        procs["relay"] = Proc("relay", [*RELAY, "--config", str(relay.config)], workdir)
        procs["relay"].wait_for_output("altmesh-relay ready")
        helpers.write_client_config(
            service, "service", relay, relay_port, service=("data.alt", f"127.0.0.1:{data_port}")
        )
        helpers.set_options(
            service.config, "link", handshake_timeout_seconds=SERVICE_HANDSHAKE_TIMEOUT
        )
        helpers.set_options(service.config, "log", aggregate_seconds=1.0)
        helpers.write_client_config(
            client,
            "client",
            relay,
            relay_port,
            dns_port=named.port,
            trust_anchor=named.trust_anchor,
        )
        forward_port, offline_forward_port = free_port(), free_port()
        procs["service"] = Proc(
            "service",
            [
                *ALTMESH,
                "serve",
                "data.alt",
                "--to",
                f"127.0.0.1:{data_port}",
                "--config",
                str(service.config),
            ],
            workdir,
        )
        procs["client"] = Proc(
            "client",
            [
                *ALTMESH,
                "up",
                "--forward",
                f"{forward_port}:data.alt:80",
                "--forward",
                f"{offline_forward_port}:offline.alt:80",
                "--config",
                str(client.config),
            ],
            workdir,
        )
        for node in (service, client):
            helpers.wait_linked(node)
        yield Net(
            workdir,
            relay,
            relay_port,
            metrics_port,
            service,
            client,
            forward_port,
            offline_forward_port,
            procs,
        )
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()
        named.stop()


class Attacker:
    """A raw link that keeps as many streams open towards the service as the relay allows,
    sends nothing on them, and reopens every stream that is reset."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.key = StaticKeyPair.generate()
        self.stop = threading.Event()
        self.opened = 0
        self.resets = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attacker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._attack())
        except BaseException as error:  # reported by the test
            self.error = error

    async def _attack(self) -> None:
        loop = asyncio.get_running_loop()
        conn, reader, writer = await helpers.raw_link(
            self.net.relay_port, self.key, self.net.relay.public
        )
        destination = node_address(parse_prefix(helpers.PREFIX), self.net.service.public)
        while not self.stop.is_set():
            try:
                while True:
                    conn.open_stream(destination, 80)
                    self.opened += 1
            except StreamLimitReached:
                pass
            writer.write(conn.data_to_send(loop.time()))
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            if not data:
                raise ConnectionError("the relay closed the attacker's link")
            conn.receive_data(data, loop.time())
            while (event := conn.next_event()) is not None:
                if isinstance(event, StreamReset):
                    self.resets += 1
        writer.close()


def transfer(port: int) -> tuple[bool, float, str]:
    """One forwarded download; (complete and exact, seconds, what went wrong)."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(f"SOURCE {TRANSFER_BYTES} 7\n".encode())
            digest = hashlib.sha256()
            received = 0
            while chunk := sock.recv(65536):
                digest.update(chunk)
                received += len(chunk)
    except OSError as error:
        return False, time.monotonic() - started, f"{type(error).__name__}: {error}"
    elapsed = time.monotonic() - started
    exact = received == TRANSFER_BYTES and digest.hexdigest() == source_sha256(TRANSFER_BYTES, 7)
    return exact, elapsed, f"{received} bytes"


def relay_streams(net: Net) -> float:
    return helpers.metric_value(helpers.metrics_text(net.metrics_port), "altmesh_streams")


def test_one_link_holding_every_stream_slot_of_a_service_cannot_deny_it_to_others(
    net: Net, figures: dict[str, str]
) -> None:
    with Attacker(net) as attacker:
        helpers.wait_until(lambda: relay_streams(net) >= 1024, 30, "the attacker's 1024 streams")
        results = [transfer(net.forward_port) for _ in range(TRANSFERS)]
        held_during = relay_streams(net)
    assert attacker.error is None, attacker.error
    failed = [(n, why) for n, (ok, _s, why) in enumerate(results) if not ok]
    assert not failed, f"{len(failed)} of {TRANSFERS} transfers failed: {failed[:5]}"
    slowest = max(seconds for _ok, seconds, _why in results)
    assert slowest < NEW_STREAM_DEADLINE, f"slowest transfer took {slowest:.2f} s"
    figures["transfers during a stream-slot attack"] = (
        f"{TRANSFERS}/{TRANSFERS} exact, slowest {slowest * 1000:.0f} ms, "
        f"attacker opened {attacker.opened} streams, {attacker.resets} reset"
    )
    assert held_during >= 1000  # the attacker kept nearly every slot it could
    events = net.relay.security_events()
    preempted = [e for e in events if e["reason"] == "stream_preempted"]
    assert preempted and all(e["event"] == "rate_limited" for e in preempted)
    assert preempted[0]["peer_key"] == encode_public_key(attacker.key.public)
    text = helpers.metrics_text(net.metrics_port)
    assert helpers.metric_value(text, 'altmesh_rejections_total{reason="stream_preempted"}') >= 1


def test_a_service_resets_streams_whose_end_to_end_handshake_never_completes(net: Net) -> None:
    def timeouts() -> int:
        return sum(
            int(str(e["count"]))
            for e in net.service.security_events()
            if e["event"] == "handshake_failed" and e["reason"] == "handshake_timeout"
        )

    before = timeouts()
    with Attacker(net) as attacker:
        helpers.wait_until(lambda: attacker.resets >= 1024, 30, "the service's deadline")
    assert attacker.error is None, attacker.error
    # Every stream the attacker held was reset once the service's deadline ran out, and the
    # service logged them (aggregated: a first line and a summary with the count).
    helpers.wait_until(lambda: timeouts() - before >= 1024, 15, "handshake_timeout events")
    lines = [e for e in net.service.security_events() if e["reason"] == "handshake_timeout"]
    assert len(lines) < 100, f"{len(lines)} lines for one link's timeouts"
    assert str(lines[-1]["detail"]).startswith("end-to-end:")


def test_a_forward_whose_stream_the_relay_refuses_is_reset_and_the_client_logs_why(
    net: Net,
) -> None:
    with socket.create_connection(("127.0.0.1", net.offline_forward_port), timeout=15) as sock:
        sock.sendall(b"SOURCE 10 1\n")
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass
    helpers.wait_until(
        lambda: "stream refused" in net.procs["client"].errors(), 5, "the client's log line"
    )
