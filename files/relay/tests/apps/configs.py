"""Valid node configs with real key files, for tests that break one thing at a time."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from altmesh.keyfile import encode_public_key, generate_key_file

PREFIX = "fd12:3456:789a::/48"
ANCHOR = "alt. IN DS 12345 13 2 " + "AB" * 32
PEER_KEY = encode_public_key(bytes(range(32)))
OTHER_KEY = encode_public_key(bytes(range(1, 33)))
THIRD_KEY = encode_public_key(bytes(range(2, 34)))


@dataclass
class Node:
    """A node's directory: its key file (mode 600), its public key and where its config goes."""

    dir: Path
    key_file: Path
    public_b64: str
    config: Path

    def write(self, text: str) -> Path:
        self.config.write_text(text)
        return self.config


def make_node(tmp_path: Path, name: str = "node") -> Node:
    directory = tmp_path / name
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "node.key"
    public = generate_key_file(key_file)
    return Node(directory, key_file, encode_public_key(public), directory / "node.toml")


def common(role: str, name: str = "testnet") -> str:
    return f"""role = "{role}"
[network]
name = "{name}"
prefix = "{PREFIX}"
[node]
private_key_file = "node.key"
state_dir = "state"
"""


def relays_table(port: int = 7400) -> str:
    return f'[[relays]]\naddress = "127.0.0.1:{port}"\npublic_key = "{PEER_KEY}"\n'


def relay_text(extra: str = "") -> str:
    return (
        common("relay")
        + """[relay]
listen = "127.0.0.1:7400"
metrics_listen = "127.0.0.1:9400"
"""
        + extra
    )


def client_text(extra_client: str = "", tail: str = "") -> str:
    return (
        common("client")
        + f"""[[relays]]
address = "127.0.0.1:7400"
public_key = "{PEER_KEY}"
[dns]
servers = ["127.0.0.1:5353"]
trust_anchor = "{ANCHOR}"
[client]
socks_listen = "off"
{extra_client}
"""
        + tail
    )


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A module of the altmesh distribution as a real process (`altmesh.cli`, ...)."""
    return subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, timeout=timeout
    )
