"""A mesh of real relay processes on loopback, wired as a test says (chain, ring, ...), with a
real signed named for the services' names (and, when asked, the relays' DNS-SD set), services
(`altmesh serve`) attached to chosen relays and clients (`altmesh up`) attached to others.

Every process is stopped by PID; ports are free ports; names and directories are the test's own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
from altmesh.dnsrecords import relay_instance_txt
from altmesh.protocol import network_prefix, node_address
from altmesh.testing.named import NamedServer

from . import helpers
from .helpers import ALTMESH, HERE, PYTHON, RELAY, Node, Proc, free_port

TSIG_NAME = "altmesh-dashboard"


@dataclass
class MeshRelay:
    """One relay of the mesh: its node files, ports and process."""

    name: str
    node: Node
    port: int
    metrics_port: int
    capture: Path
    peers: list[str] = field(default_factory=list)  # the [[mesh.peers]] of its config
    proc: Proc | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics(self) -> str:
        return helpers.metrics_text(self.metrics_port)

    def log(self) -> str:
        return self.proc.errors() if self.proc is not None else ""


@dataclass
class Attached:
    """A service or client node and its process."""

    name: str
    node: Node
    relay: str
    proc: Proc
    socks_port: int | None = None


class MeshNet:
    """The processes of one mesh test; use as a context manager (everything stops at exit)."""

    def __init__(
        self,
        workdir: Path,
        relays: Iterable[str],
        links: Iterable[tuple[str, str]],
        *,
        services: Iterable[str] = (),
        rekey_seconds: float = 120,
        reject_seconds: float = 180,
        rekey_messages: int | None = None,
        dns_discovery: bool = False,
        dns_refresh_seconds: float = 5,
        probe_interval: float = 0.5,
        dead_after: float = 2.0,
        hop_limit: int | None = None,
        capture: bool = True,
        allowlist: dict[str, list[str]] | None = None,
        events_aggregate_seconds: float | None = None,
    ) -> None:
        """`allowlist`: relays whose policy is `allowlist`, each with the nodes (service or
        client names) it allows; every other relay's policy is `open`. Relay peers need no
        entry under either policy. `events_aggregate_seconds`: the relays' `[log]
        aggregate_seconds` (how long repeated security events are summed into one line)."""
        self.events_aggregate_seconds = events_aggregate_seconds
        self.workdir = workdir
        self.allowlist = allowlist or {}
        self.rekey_seconds = rekey_seconds
        self.reject_seconds = reject_seconds
        self.rekey_messages = rekey_messages
        self.dns_discovery = dns_discovery
        self.dns_refresh_seconds = dns_refresh_seconds
        self.probe_interval = probe_interval
        self.dead_after = dead_after
        self.hop_limit = hop_limit
        self.capture = capture
        self.prefix = network_prefix(helpers.PREFIX)
        self.relays: dict[str, MeshRelay] = {}
        self.attached: dict[str, Attached] = {}
        self.procs: list[Proc] = []  # every process ever started, stopped in reverse at exit
        for name in relays:
            self.add_relay(name)
        for a, b in links:
            self.relays[a].peers.append(b)
            self.relays[b].peers.append(a)
        self.service_nodes = {name: Node(name, workdir) for name in services}
        self.tsig_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        records = []
        for node in self.service_nodes.values():
            address = node_address(self.prefix, node.public)
            records += [
                f"{node.name} 300 IN AAAA {address}",
                f'{node.name} 300 IN TXT "altmesh-key={node.public_b64}"',
            ]
        self.named = NamedServer.start(
            workdir / "named",
            records=records,
            tsig_keys={TSIG_NAME: self.tsig_secret},
            update_key=TSIG_NAME,
        )
        self.data_port = free_port()
        self.data_server = self.spawn(
            "data_server", [PYTHON, str(HERE / "data_server.py"), str(self.data_port)]
        )
        self.data_server.wait_for_output("ready")

    # ------------------------------------------------------------------ relays

    def add_relay(self, name: str) -> MeshRelay:
        relay = MeshRelay(
            name,
            Node(name, self.workdir),
            free_port(),
            free_port(),
            self.workdir / f"{name}-forwarded.capture",
        )
        self.relays[name] = relay
        return relay

    def relay_config(self, relay: MeshRelay) -> str:
        text = helpers.common_config(relay.node, "relay", self.rekey_seconds, self.reject_seconds)
        if self.rekey_messages is not None:
            text = text.replace(
                "[link]\n", f"[link]\nrekey_after_messages = {self.rekey_messages}\n", 1
            )
        if self.events_aggregate_seconds is not None:
            text = text.replace(
                "[log]\n", f"[log]\naggregate_seconds = {self.events_aggregate_seconds}\n", 1
            )
        text += f"""[relay]
name = "{relay.name}"
listen = "127.0.0.1:{relay.port}"
metrics_listen = "127.0.0.1:{relay.metrics_port}"
{self._policy(relay.name)}
handshake_rate = 100000
handshake_burst = 100000
drain_seconds = 1
"""
        if self.capture:
            text += f'forwarded_capture_file = "{relay.capture}"\n'
        if self.dns_discovery:
            text += f"""[dns]
servers = ["127.0.0.1:{self.named.port}"]
trust_anchor = {json.dumps(self.named.trust_anchor)}
"""
        text += f"""[mesh]
dns_discovery = {"true" if self.dns_discovery else "false"}
dns_refresh_seconds = {self.dns_refresh_seconds}
probe_interval_seconds = {self.probe_interval}
dead_after_seconds = {self.dead_after}
reconnect_min_seconds = 0.2
reconnect_max_seconds = 2
"""
        if self.hop_limit is not None:
            text += f"hop_limit = {self.hop_limit}\n"
        for peer_name in relay.peers:
            peer = self.relays[peer_name]
            text += f"""[[mesh.peers]]
name = "{peer.name}"
public_key = "{peer.node.public_b64}"
endpoints = ["127.0.0.1:{peer.port}"]
"""
        return text

    def _policy(self, name: str) -> str:
        allowed = self.allowlist.get(name)
        if allowed is None:
            return 'policy = "open"'
        keys = [self.node(node_name).public_b64 for node_name in allowed]
        return f'policy = "allowlist"\nallowed_keys = {json.dumps(keys)}'

    def node(self, name: str) -> Node:
        """A service's or client's node (made on first use, so a relay's allowlist can name a
        client before it starts)."""
        if name not in self.service_nodes:
            self.service_nodes[name] = Node(name, self.workdir)
        return self.service_nodes[name]

    def write_relay_config(self, name: str) -> None:
        relay = self.relays[name]
        relay.node.config.write_text(self.relay_config(relay))

    def start_relay(self, name: str) -> MeshRelay:
        relay = self.relays[name]
        self.write_relay_config(name)
        relay.proc = self.spawn(name, [*RELAY, "--config", str(relay.node.config)])
        relay.proc.wait_for_output("altmesh-relay ready")
        return relay

    def start_relays(self) -> None:
        for name in self.relays:
            self.start_relay(name)

    def kill_relay(self, name: str) -> None:
        relay = self.relays[name]
        assert relay.proc is not None
        relay.proc.stop(signal.SIGKILL)

    def signal_relay(self, name: str, signum: int) -> None:
        os.kill(self.relays[name].pid, signum)

    # ------------------------------------------------------------------ what relays know

    def mesh_state(self, name: str, metric: str = "altmesh_mesh_link_up") -> dict[str, str]:
        """Peer name -> "up"/"down", from the relay's metrics (`metric`: a 0/1 gauge by peer)."""
        states: dict[str, str] = {}
        for line in self.relays[name].metrics().splitlines():
            if line.startswith(metric + "{"):
                peer = line.split('peer="', 1)[1].split('"', 1)[0]
                states[peer] = "up" if float(line.rsplit(" ", 1)[1]) == 1 else "down"
        return states

    def wait_routed(self, links: Iterable[tuple[str, str]], timeout: float = 60.0) -> None:
        """Until both ends of every link route over it: each end announced it and saw the other
        end's announcement (altmesh_mesh_link_routed), so routes have converged on it."""
        wanted = list(links)

        def routed(a: str, b: str) -> bool:
            return self.mesh_state(a, "altmesh_mesh_link_routed").get(b) == "up"

        helpers.wait_until(
            lambda: all(routed(a, b) and routed(b, a) for a, b in wanted),
            timeout,
            f"routes over {wanted}",
        )
        time.sleep(0.5)  # the last announcements reach the relays further away

    def wait_links_up(self, links: Iterable[tuple[str, str]], timeout: float = 30.0) -> None:
        wanted = list(links)
        helpers.wait_until(
            lambda: (
                all(self.mesh_state(a).get(b) == "up" for a, b in wanted)
                and all(self.mesh_state(b).get(a) == "up" for a, b in wanted)
            ),
            timeout,
            f"mesh links {wanted}",
        )

    def relay_names(self, labels: Iterable[str]) -> list[str]:
        """A STREAM_PATH's labels as relay names: a relay the first relay does not know by name
        (not one of its peers) is labelled with the start of its base64 key."""
        by_label = {relay.node.public_b64[:8]: name for name, relay in self.relays.items()}
        return [label if label in self.relays else by_label.get(label, label) for label in labels]

    def links_established(self, name: str, peer: str) -> float:
        text = self.relays[name].metrics()
        return helpers.metric_value(text, f'altmesh_mesh_links_established_total{{peer="{peer}"}}')

    # ------------------------------------------------------------------ services and clients

    def start_service(self, name: str, relay: str, target: str | None = None) -> Attached:
        node = self.service_nodes[name]
        target = target or f"127.0.0.1:{self.data_port}"
        self._write_node_config(node, "service", relay, service=(f"{name}.alt", target))
        proc = self.spawn(
            name,
            [*ALTMESH, "serve", f"{name}.alt", "--to", target, "--config", str(node.config)],
        )
        attached = Attached(name, node, relay, proc)
        self.attached[name] = attached
        helpers.wait_linked(node)
        return attached

    def start_client(self, name: str, relay: str) -> Attached:
        node = self.node(name)
        socks_port = free_port()
        self._write_node_config(node, "client", relay, socks_port=socks_port)
        proc = self.spawn(name, [*ALTMESH, "up", "--config", str(node.config)])
        attached = Attached(name, node, relay, proc, socks_port)
        self.attached[name] = attached
        helpers.wait_linked(node)
        return attached

    def _write_node_config(
        self,
        node: Node,
        role: str,
        relay: str,
        *,
        socks_port: int | None = None,
        service: tuple[str, str] | None = None,
    ) -> None:
        mesh_relay = self.relays[relay]
        helpers.write_client_config(
            node,
            role,
            mesh_relay.node,
            mesh_relay.port,
            dns_port=self.named.port if role == "client" else None,
            trust_anchor=self.named.trust_anchor,
            socks_port=socks_port,
            service=service,
            rekey=self.rekey_seconds,
            reject=self.reject_seconds,
        )

    # ------------------------------------------------------------------ DNS

    def publish_relay(self, name: str, ttl: int = 5) -> None:
        """Publish a relay in the zone as the dashboard does (docs/dashboard-dns.md): its AAAA and
        key TXT, and the DNS-SD PTR, SRV and TXT of its instance, in one signed update."""
        relay = self.relays[name]
        address = node_address(self.prefix, relay.node.public)
        instance = f"{name}._altmesh._tcp"
        target = f"ep0.{name}"
        update = dns.update.UpdateMessage(
            "alt.",
            keyring=dns.tsigkeyring.from_text({TSIG_NAME: self.tsig_secret}),
            keyname=TSIG_NAME,
            keyalgorithm="hmac-sha256",
        )
        update.replace(name, ttl, "AAAA", str(address))
        update.replace(name, ttl, "TXT", f'"altmesh-key={relay.node.public_b64}"')
        update.add("_altmesh._tcp", ttl, "PTR", f"{instance}.alt.")
        update.replace(instance, ttl, "SRV", f"0 10 {relay.port} {target}.alt.")
        strings = " ".join(f'"{s}"' for s in relay_instance_txt(name, relay.node.public))
        update.replace(instance, ttl, "TXT", strings)
        update.replace(target, ttl, "A", "127.0.0.1")
        answer = dns.query.tcp(update, self.named.address, port=self.named.port, timeout=5)
        assert answer.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(answer.rcode())

    # ------------------------------------------------------------------ lifetime

    def spawn(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, argv, self.workdir)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            proc.stop()
        self.named.stop()

    def __enter__(self) -> MeshNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def captures(self) -> Iterator[tuple[str, bytes]]:
        for name, relay in self.relays.items():
            if relay.capture.exists():
                yield name, relay.capture.read_bytes()


# ---------------------------------------------------------------------- streams through SOCKS


class SocksRefused(Exception):
    def __init__(self, reply: int) -> None:
        super().__init__(f"SOCKS reply {reply}")
        self.reply = reply


async def socks_connect(
    port: int, host: str, dest_port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    name = host.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", dest_port))
    reply = await reader.readexactly(4)
    if reply[1] != 0:
        writer.close()
        raise SocksRefused(reply[1])
    await reader.readexactly({1: 4, 4: 16}[reply[3]] + 2)
    return reader, writer


async def echo(port: int, host: str, size: int, *, chunk: int = 32768) -> bool:
    """A stream to the data server's echo through SOCKS: whether `size` random bytes came back
    sha256-exact."""
    reader, writer = await socks_connect(port, host, 9)
    payload = os.urandom(size)
    writer.write(b"ECHO\n")

    async def send() -> None:
        for offset in range(0, size, chunk):
            writer.write(payload[offset : offset + chunk])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    digest = hashlib.sha256()
    received = 0
    while data := await reader.read(65536):
        digest.update(data)
        received += len(data)
    await sender
    writer.close()
    return received == size and digest.digest() == hashlib.sha256(payload).digest()


def first_stream_succeeds_within(
    port: int, host: str, timeout: float, *, every: float = 0.1, attempt_timeout: float = 5.0
) -> float:
    """Open a new stream every `every` seconds (each an echo through SOCKS) until one carries
    its bytes back exactly; the seconds from the call to that success (TimeoutError after
    `timeout`). Attempts overlap, so one hanging on a dead path does not delay the next."""

    async def run() -> float:
        started = time.monotonic()
        pending: set[asyncio.Task[bool]] = set()

        async def attempt() -> bool:
            try:
                return await asyncio.wait_for(echo(port, host, 4096), attempt_timeout)
            except (OSError, SocksRefused, TimeoutError, asyncio.IncompleteReadError):
                return False

        try:
            while time.monotonic() - started < timeout:
                pending.add(asyncio.create_task(attempt()))
                done, pending = await asyncio.wait(pending, timeout=every)
                if any(task.result() for task in done):
                    return time.monotonic() - started
            raise TimeoutError(f"no stream to {host} succeeded within {timeout} s")
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    return asyncio.run(run())


async def stream_path(port: int, node: Node, host: str) -> list[str]:
    """The relay path of a new stream to `host`, as the client's status reports it (names, or
    key prefixes for relays the first relay knows no name of: see MeshNet.relay_names)."""
    reader, writer = await socks_connect(port, host, 9)
    try:
        writer.write(b"ECHO\nping")
        assert await reader.readexactly(4) == b"ping"
        streams = status(node)["streams"]
        assert streams, "the open stream has no path in the client's status"
        newest = max(streams, key=lambda entry: int(entry["stream_id"]))  # ids only grow
        return list(newest["path"])
    finally:
        writer.close()


def status(node: Node) -> dict[str, Any]:
    return helpers.node_status(node)
