"""A small network for the status page tests: named, one relay, a service (`data.alt`, the echo
server) and a client (`altmesh up`) with SOCKS5 and the status page on. The client also lists a
relay entry with a key nobody holds, so its page has a failed candidate and a warning to show.

Every process is stopped by PID; ports are free ports; files live in the test's directory.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from altmesh.protocol import network_prefix, node_address
from altmesh.testing.named import NamedServer

from . import helpers
from .helpers import ALTMESH, HERE, PYTHON, RELAY, Node, Proc, free_port

REKEY_SECONDS = 2  # the links rekey often: the page has security events (rekey) to list


@dataclass
class StatusNet:
    workdir: Path
    named: NamedServer
    relay: Node
    relay_port: int
    client: Node
    socks_port: int
    page_port: int
    stranger: Node  # the key of the client's second [[relays]] entry: no relay holds it
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def page(self) -> str:
        return f"http://127.0.0.1:{self.page_port}/"

    def login_url(self) -> str:
        """What `altmesh status --page-url` prints: the page's address with its token."""
        result = subprocess.run(
            [*ALTMESH, "status", "--page-url", "--config", str(self.client.config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.strip()

    def token(self) -> str:
        return self.login_url().split("#token=", 1)[1]


def client_config(net: StatusNet, rekey: float) -> str:
    text = helpers.common_config(net.client, "client", rekey, rekey * 3)
    text += f"""[[relays]]
address = "127.0.0.1:{net.relay_port}"
public_key = "{net.relay.public_b64}"
[[relays]]
address = "127.0.0.1:{net.relay_port}"
public_key = "{net.stranger.public_b64}"
[client]
socks_listen = "127.0.0.1:{net.socks_port}"
control_socket = "{net.client.control}"
status_page = "127.0.0.1:{net.page_port}"
reconnect_min_seconds = 5
reconnect_max_seconds = 10
[dns]
servers = ["127.0.0.1:{net.named.port}"]
trust_anchor = "{net.named.trust_anchor}"
"""
    return text


@contextmanager
def status_net(workdir: Path) -> Iterator[StatusNet]:
    prefix = network_prefix(helpers.PREFIX)
    relay, data, client, stranger = (Node(n, workdir) for n in ("relay", "data", "client", "x"))
    address = node_address(prefix, data.public)
    named = NamedServer.start(
        workdir / "named",
        records=[
            f"data 300 IN AAAA {address}",
            f'data 300 IN TXT "altmesh-key={data.public_b64}"',
        ],
    )
    net = StatusNet(workdir, named, relay, free_port(), client, free_port(), free_port(), stranger)
    procs = net.procs
    try:
        data_port = free_port()
        data_server = [PYTHON, str(HERE / "data_server.py"), str(data_port)]
        procs["data_server"] = Proc("data_server", data_server, workdir)
        procs["data_server"].wait_for_output("ready")
        helpers.write_relay_config(
            relay, net.relay_port, free_port(), rekey=REKEY_SECONDS, reject=REKEY_SECONDS * 3
        )
        procs["relay"] = Proc("relay", [*RELAY, "--config", str(relay.config)], workdir)
        procs["relay"].wait_for_output("altmesh-relay ready")
        helpers.write_client_config(
            data, "service", relay, net.relay_port, rekey=REKEY_SECONDS, reject=REKEY_SECONDS * 3
        )
        client.config.write_text(client_config(net, REKEY_SECONDS))
        for node, argv in (
            (data, ["serve", "data.alt", "--to", f"127.0.0.1:{data_port}"]),
            (client, ["up"]),
        ):
            procs[node.name] = Proc(
                node.name, [*ALTMESH, *argv, "--config", str(node.config)], workdir
            )
        for node in (data, client):
            helpers.wait_linked(node)
        yield net
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()
        named.stop()


async def open_echo_stream(
    socks_port: int, payload: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A SOCKS5 stream to data.alt's echo, `payload` sent and echoed back; left open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", socks_port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x01\x00\x03\x08data.alt" + struct.pack("!H", 9))
    reply = await reader.readexactly(4)
    assert reply[1] == 0, f"SOCKS reply {reply[1]}"
    await reader.readexactly({1: 4, 4: 16}[reply[3]] + 2)  # the bound address and port
    writer.write(b"ECHO\n" + payload)
    await writer.drain()
    await reader.readexactly(len(payload))
    return reader, writer
