"""Shared parts of the integration tests: processes stopped by PID, configs, a raw link client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from altmesh.keyfile import encode_public_key, generate_key_file
from altmesh.protocol import LinkConfig, LinkConnection, StaticKeyPair, TimestampIssuer
from altmesh.testing import ports

HERE = Path(__file__).parent
PREFIX = "fd12:3456:789a::/48"
NETWORK = "altmesh-test"
PYTHON = sys.executable
ALTMESH = [PYTHON, "-m", "altmesh.cli"]
RELAY = [PYTHON, "-m", "altmesh.relay.main"]
# The test process as a node of its own: every raw link or end-to-end session it starts takes
# its handshake timestamp from this one issuer.
TIMESTAMPS = TimestampIssuer(time.time)


def free_port() -> int:
    """A loopback port for a server this test starts; see altmesh.testing.ports for why it is
    not taken from the kernel's ephemeral range."""
    return ports.free_port()


class Proc:
    """A child process with its output in files; `stop()` signals it by PID and waits."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        # Output files are appended to across restarts: only what this process wrote counts.
        self.out_offset = self.out_path.stat().st_size if self.out_path.exists() else 0
        env = dict(os.environ)
        # glibc malloc tuning that helps the relay's hot path (docs/relay-config.md explains it).
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "1048576")
        env.setdefault("MALLOC_TRIM_THRESHOLD_", "4194304")
        env.setdefault("MALLOC_TOP_PAD_", "4194304")
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=workdir)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        with open(self.out_path, "rb") as out:
            out.seek(self.out_offset)
            return out.read().decode(errors="replace")

    def errors(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.popen.returncode}:\n{self.errors()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not print {text!r}:\n{self.errors()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


class Node:
    """Key pair and files of one node of the test network."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key_file = self.dir / "node.key"
        self.public = generate_key_file(self.key_file)
        self.public_b64 = encode_public_key(self.public)
        self.config = self.dir / "node.toml"
        self.events = self.dir / "events.jsonl"
        self.state = self.dir / "state"
        self.control = self.dir / "control.sock"

    def keypair(self) -> StaticKeyPair:
        from altmesh.keyfile import read_private_key

        return StaticKeyPair.from_private(read_private_key(self.key_file))

    def security_events(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line]


def common_config(node: Node, role: str, rekey: float, reject: float) -> str:
    return f"""role = "{role}"
[network]
name = "{NETWORK}"
prefix = "{PREFIX}"
[node]
private_key_file = "{node.key_file}"
state_dir = "{node.state}"
[link]
rekey_after_seconds = {rekey}
reject_after_seconds = {reject}
keepalive_seconds = 5
[log]
events_file = "{node.events}"
"""


def write_relay_config(
    node: Node,
    port: int,
    metrics_port: int,
    *,
    policy: str = "open",
    allowed_keys_file: Path | None = None,
    handshake_rate: float = 100000,
    handshake_burst: int = 100000,
    rekey: float = 120,
    reject: float = 180,
    capture: Path | None = None,
) -> None:
    text = (
        common_config(node, "relay", rekey, reject)
        + f"""[relay]
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics_port}"
policy = "{policy}"
handshake_rate = {handshake_rate}
handshake_burst = {handshake_burst}
drain_seconds = 2
"""
    )
    if allowed_keys_file is not None:
        text += f'allowed_keys_file = "{allowed_keys_file}"\n'
    if capture is not None:
        text += f'forwarded_capture_file = "{capture}"\n'
    node.config.write_text(text)


def write_client_config(
    node: Node,
    role: str,
    relay: Node,
    relay_port: int,
    *,
    dns_port: int | None = None,
    trust_anchor: str = "",
    socks_port: int | None = None,
    forwards: tuple[str, ...] = (),
    service: tuple[str, str] | None = None,
    rekey: float = 120,
    reject: float = 180,
    client_options: str = "",
    network: str = NETWORK,
) -> None:
    """A client or service config; `client_options` are more `[client]` lines."""
    text = common_config(node, role, rekey, reject).replace(
        f'name = "{NETWORK}"', f'name = "{network}"', 1
    )
    text += f"""[[relays]]
address = "127.0.0.1:{relay_port}"
public_key = "{relay.public_b64}"
[client]
socks_listen = "{f"127.0.0.1:{socks_port}" if socks_port else "off"}"
forwards = {json.dumps(list(forwards))}
control_socket = "{node.control}"
reconnect_min_seconds = 0.2
reconnect_max_seconds = 2
{client_options}
"""
    if dns_port is not None:
        text += f"""[dns]
servers = ["127.0.0.1:{dns_port}"]
trust_anchor = {json.dumps(trust_anchor)}
"""
    if service is not None:
        text += f"""[service]
name = "{service[0]}"
target = "{service[1]}"
"""
    node.config.write_text(text)


def set_options(config: Path, table: str, **options: object) -> None:
    """Add `key = value` lines (TOML values) at the top of `[table]` in a written config."""
    text = config.read_text()
    header = f"[{table}]\n"
    if header not in text:
        text += header
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in options.items())
    config.write_text(text.replace(header, header + lines, 1))


def node_status(node: Node) -> dict[str, Any]:
    from altmesh.client.node import control_status

    return control_status(node.control)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError, KeyError) as err:
            last_error = err
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what} (last error: {last_error})")


def wait_linked(node: Node, timeout: float = 20.0) -> dict[str, Any]:
    wait_until(
        lambda: node_status(node)["link_state"] == "established", timeout, f"{node.name} link"
    )
    return node_status(node)


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
    return text


def metric_value(text: str, name: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found:
        raise KeyError(name)
    return total


def link_config() -> LinkConfig:
    import ipaddress

    return LinkConfig(network=NETWORK, prefix=ipaddress.IPv6Network(PREFIX))


async def raw_link(
    port: int,
    local: StaticKeyPair,
    relay_public: bytes,
    timeout: float = 10.0,
    config: LinkConfig | None = None,
    *,
    probe: bool = False,
) -> tuple[LinkConnection, asyncio.StreamReader, asyncio.StreamWriter]:
    """An established link to the relay from a bare initiator in this process (`probe`: a
    link that only measures, HANDSHAKE_FLAG_PROBE)."""
    conn, _first, reader, writer = await _raw_handshake(
        port, local, relay_public, timeout, config, probe=probe
    )
    return conn, reader, writer


async def raw_link_handshake(
    port: int, local: StaticKeyPair, relay_public: bytes, timeout: float = 10.0
) -> tuple[LinkConnection, bytes, asyncio.StreamWriter]:
    """Complete a link handshake with the relay as a bare initiator; returns the first message."""
    conn, first, _reader, writer = await _raw_handshake(port, local, relay_public, timeout, None)
    return conn, first, writer


async def _raw_handshake(
    port: int,
    local: StaticKeyPair,
    relay_public: bytes,
    timeout: float,
    config: LinkConfig | None,
    *,
    probe: bool = False,
) -> tuple[LinkConnection, bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    conn = LinkConnection.initiator(
        config or link_config(), local, relay_public, timestamps=TIMESTAMPS, probe=probe
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn.start(loop.time())
    first = conn.data_to_send(loop.time())
    writer.write(first)
    async with asyncio.timeout(timeout):
        while not conn.established:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("relay closed the link during the handshake")
            conn.receive_data(data, loop.time())
            while conn.next_event() is not None:
                pass
            out = conn.data_to_send(loop.time())
            if out:
                writer.write(out)
    return conn, first, reader, writer


async def send_raw_and_read(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh connection; return all the relay answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    received = b""
    try:
        async with asyncio.timeout(timeout):
            while data := await reader.read(65536):
                received += data
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
    return received
