"""Client-side hardening against real processes: SOCKS5 reply codes, SOCKS5 while no relay is up,
the SOCKS5 negotiation timeout and cap, and a relay that refuses the client's handshake.

    socks ──> client ──link──> relay ──link──> web.alt (port 9 only) ──> data_server.py
                                        └──link──> dead.alt ──> (a closed port)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from altmesh.protocol import network_prefix, node_address
from altmesh.testing.named import NamedServer

from . import helpers
from .helpers import ALTMESH, HERE, PYTHON, RELAY, Node, Proc, free_port

NEGOTIATION_TIMEOUT = 1.0
MAX_NEGOTIATIONS = 40
LINK_WAIT = 1.5


@dataclass
class Net:
    workdir: Path
    named: NamedServer
    relay: Node
    relay_port: int
    metrics_port: int
    client: Node
    socks_port: int
    procs: dict[str, Proc]

    def start_client(
        self, name: str, relay_port: int, *, network: str = helpers.NETWORK, options: str = ""
    ) -> tuple[Node, Proc, int]:
        """Another client of the test's own (stopped by the fixture at the end)."""
        node = Node(name, self.workdir)
        socks_port = free_port()
        helpers.write_client_config(
            node,
            "client",
            self.relay,
            relay_port,
            dns_port=self.named.port,
            trust_anchor=self.named.trust_anchor,
            socks_port=socks_port,
            network=network,
            client_options=options,
        )
        proc = Proc(name, [*ALTMESH, "up", "--config", str(node.config)], self.workdir)
        self.procs[name] = proc
        helpers.wait_until(lambda: node.control.exists(), 20, f"{name} control socket")
        return node, proc, socks_port


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    workdir = tmp_path_factory.mktemp("hardening")
    prefix = network_prefix(helpers.PREFIX)
    relay, web, dead, offline, client = (
        Node(n, workdir) for n in ("relay", "web", "dead", "offline", "client")
    )
    records = []
    for node, name in ((web, "web"), (dead, "dead"), (offline, "offline")):
        address = node_address(prefix, node.public)
        records += [
            f"{name} 300 IN AAAA {address}",
            f'{name} 300 IN TXT "altmesh-key={node.public_b64}"',
        ]
    named = NamedServer.start(workdir / "named", records=records)
    procs: dict[str, Proc] = {}
    try:
        data_port = free_port()
        data_server = [PYTHON, str(HERE / "data_server.py"), str(data_port)]
        procs["data"] = Proc("data", data_server, workdir)
        procs["data"].wait_for_output("ready")
        relay_port, metrics_port, socks_port = free_port(), free_port(), free_port()
        helpers.write_relay_config(relay, relay_port, metrics_port)
        procs["relay"] = Proc("relay", [*RELAY, "--config", str(relay.config)], workdir)
        procs["relay"].wait_for_output("altmesh-relay ready")
        for node in (web, dead):
            helpers.write_client_config(node, "service", relay, relay_port)
        helpers.write_client_config(
            client,
            "client",
            relay,
            relay_port,
            dns_port=named.port,
            trust_anchor=named.trust_anchor,
            socks_port=socks_port,
            client_options=(
                f"socks_negotiation_timeout_seconds = {NEGOTIATION_TIMEOUT}\n"
                f"socks_max_negotiations = {MAX_NEGOTIATIONS}\n"
                f"link_wait_seconds = {LINK_WAIT}\n"
            ),
        )
        closed_port = free_port()  # nothing listens there: the dead service's target refuses
        for node, argv in (
            (web, ["serve", "web.alt", "--to", f"127.0.0.1:{data_port}", "--port", "9"]),
            (dead, ["serve", "dead.alt", "--to", f"127.0.0.1:{closed_port}"]),
            (client, ["up"]),
        ):
            procs[node.name] = Proc(
                node.name, [*ALTMESH, *argv, "--config", str(node.config)], workdir
            )
        for node in (web, dead, client):
            helpers.wait_linked(node)
        yield Net(workdir, named, relay, relay_port, metrics_port, client, socks_port, procs)
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()
        named.stop()


async def socks_reply(port: int, host: str, dest_port: int) -> tuple[int, float]:
    """One SOCKS5 CONNECT: (the reply code, seconds from the request to the reply)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        try:
            literal = socket.inet_pton(socket.AF_INET, host)
            address = b"\x01" + literal
        except OSError:
            address = b"\x03" + bytes([len(host)]) + host.encode()
        started = time.monotonic()
        writer.write(b"\x05\x01\x00" + address + struct.pack("!H", dest_port))
        reply = await asyncio.wait_for(reader.readexactly(4), 30)
        return reply[1], time.monotonic() - started
    finally:
        writer.close()


def reply_of(port: int, host: str, dest_port: int) -> tuple[int, float]:
    return asyncio.run(socks_reply(port, host, dest_port))


# ---------------------------------------------------------------------- reply codes


def test_socks_replies_tell_no_such_name_not_alt_no_route_and_port_refused_apart(net: Net) -> None:
    assert reply_of(net.socks_port, "web.alt", 9)[0] == 0  # the service works
    cases = {
        ("nosuch.alt", 80): 4,  # no such name
        ("example.com", 80): 2,  # not a .alt name
        ("192.0.2.1", 80): 2,  # not a .alt name (an IPv4 address)
        ("offline.alt", 80): 3,  # no route: published, attached nowhere
        ("web.alt", 80): 5,  # the service does not publish port 80 (its RESET 4)
        ("dead.alt", 80): 5,  # the service's target refuses the connection (its RESET 3)
    }
    got = {case: reply_of(net.socks_port, *case)[0] for case in cases}
    assert got == cases
    errors = net.procs["client"].errors()
    assert "no route: no relay announces the address (reset code 16" in errors
    assert "port refused by the service (reset code 4" in errors
    assert "the service's target refused (reset code 3" in errors


# ---------------------------------------------------------------------- no relay


def test_socks_answers_at_once_when_no_relay_is_up(net: Net, figures: dict[str, str]) -> None:
    node, _proc, socks_port = net.start_client("lonely", free_port())  # no relay listens there
    helpers.wait_until(
        lambda: helpers.node_status(node)["link_state"] == "down", 20, "lonely gives up"
    )
    code, seconds = reply_of(socks_port, "web.alt", 9)
    figures["SOCKS reply with no relay up"] = f"{seconds * 1000:.0f} ms (reply {code})"
    assert code == 1
    assert seconds < 1.0


def test_socks_answers_within_link_wait_when_the_relay_never_answers(
    net: Net, figures: dict[str, str]
) -> None:
    with socket.socket() as silent:  # accepts TCP (the kernel's backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        node, _proc, socks_port = net.start_client(
            "waiting", silent.getsockname()[1], options=f"link_wait_seconds = {LINK_WAIT}\n"
        )
        code, seconds = reply_of(socks_port, "web.alt", 9)
    figures["SOCKS reply while the relay accepts TCP but never answers"] = (
        f"{seconds:.2f} s (reply {code}; link_wait_seconds = {LINK_WAIT})"
    )
    assert code == 1
    assert seconds < LINK_WAIT + 1.0
    assert helpers.node_status(node)["link_state"] != "established"


# ---------------------------------------------------------------------- negotiation


def test_idle_socks_negotiations_are_capped_and_closed_after_the_timeout(net: Net) -> None:
    async def run() -> tuple[int, int, float, int]:
        conns = [
            await asyncio.open_connection("127.0.0.1", net.socks_port)
            for _ in range(MAX_NEGOTIATIONS + 20)
        ]
        started = time.monotonic()
        await asyncio.sleep(0.3)

        async def closed(reader: asyncio.StreamReader, within: float) -> bool:
            try:
                return await asyncio.wait_for(reader.read(1), within) == b""
            except TimeoutError:
                return False
            except ConnectionError:
                return True

        early = sum([await closed(r, 0.01) for r, _ in conns])
        results = await asyncio.gather(*(closed(r, NEGOTIATION_TIMEOUT + 3) for r, _ in conns))
        all_closed_after = time.monotonic() - started
        for _, writer in conns:
            writer.close()
        code, _ = await socks_reply(net.socks_port, "nosuch.alt", 80)
        return early, sum(results), all_closed_after, code

    early, closed_total, seconds, code_after = asyncio.run(run())
    assert early == 20  # over the cap: closed at once
    assert closed_total == MAX_NEGOTIATIONS + 20  # the idle ones too, by the timeout
    assert seconds < NEGOTIATION_TIMEOUT + 2.0
    assert code_after == 4  # and the proxy still answers
    assert "negotiations are under way, the most client.socks_max_negotiations allows" in (
        net.procs["client"].errors()
    )


# ---------------------------------------------------------------------- refused handshakes


def handshake_failures(net: Net) -> float:
    text = helpers.metrics_text(net.metrics_port)
    for line in text.splitlines():
        if line.startswith('altmesh_handshakes_total{result="failed"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("mistake", ["network name", "relay key"])
def test_a_relay_that_refuses_the_handshake_is_reported_once_and_backed_off(
    net: Net, mistake: str
) -> None:
    before = handshake_failures(net)
    name = "wrongnet" if mistake == "network name" else "wrongkey"
    if mistake == "network name":
        node, proc, _ = net.start_client(name, net.relay_port, network="another-network")
    else:
        node = Node(name, net.workdir)
        stranger = Node(f"{name}-relay", net.workdir)  # a key the relay does not hold
        helpers.write_client_config(
            node,
            "client",
            stranger,
            net.relay_port,
            dns_port=net.named.port,
            trust_anchor=net.named.trust_anchor,
        )
        proc = Proc(name, [*ALTMESH, "up", "--config", str(node.config)], net.workdir)
        net.procs[name] = proc
    watched = 8.0
    time.sleep(watched)
    log = proc.errors()
    warnings = [line for line in log.splitlines() if "during the link handshake" in line]
    assert len(warnings) == 1, log[-3000:]
    assert " WARNING " in warnings[0]
    if mistake == "network name":
        assert "network.name 'another-network' is not the relay's network name" in warnings[0]
    assert "peer closed the connection" not in "\n".join(
        line for line in log.splitlines() if " INFO " in line
    )
    attempts = handshake_failures(net) - before
    # reconnect_min_seconds 0.2 and max 2 (helpers): at most a dozen tries in 8 s, not hundreds.
    assert 2 <= attempts <= 12, attempts
    proc.stop()
