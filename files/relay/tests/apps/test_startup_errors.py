"""Daemons given a bad key or config stop with a message naming the problem, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from altmesh.keyfile import encode_public_key, generate_key_file


def write_configs(tmp_path: Path) -> tuple[Path, Path, Path]:
    key = tmp_path / "node.key"
    public = generate_key_file(key)
    common = f"""[network]
name = "t"
prefix = "fd12:3456:789a::/48"
[node]
private_key_file = "{key}"
state_dir = "{tmp_path / "state"}"
"""
    relay = tmp_path / "relay.toml"
    relay.write_text(
        'role = "relay"\n' + common + '[relay]\nlisten = "127.0.0.1:9"\nmetrics_listen = "off"\n'
    )
    client = tmp_path / "client.toml"
    client.write_text(
        'role = "client"\n'
        + common
        + f'[[relays]]\naddress = "127.0.0.1:9"\npublic_key = "{encode_public_key(public)}"\n'
        + '[dns]\nservers = ["127.0.0.1:9"]\n'
        + 'trust_anchor = "alt. IN DS 1 13 2 '
        + "AB" * 32
        + '"\n'
        + '[client]\nsocks_listen = "off"\n'
    )
    return key, relay, client


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=60)


def test_relay_refuses_a_private_key_others_can_read(tmp_path: Path) -> None:
    key, relay, _ = write_configs(tmp_path)
    key.chmod(0o644)
    result = run("altmesh.relay.main", "--config", str(relay))
    assert result.returncode == 2
    assert "readable by others" in result.stderr and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


def test_relay_rejects_a_client_config(tmp_path: Path) -> None:
    _, _, client = write_configs(tmp_path)
    result = run("altmesh.relay.main", "--config", str(client))
    assert result.returncode == 2
    assert "role" in result.stderr and "Traceback" not in result.stderr


def test_client_up_without_its_key_says_so(tmp_path: Path) -> None:
    key, _, client = write_configs(tmp_path)
    key.unlink()
    result = run("altmesh.cli", "up", "--config", str(client))
    assert result.returncode == 2
    assert "cannot read private key" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_a_running_node_is_a_clear_error(tmp_path: Path) -> None:
    _, _, client = write_configs(tmp_path)
    result = run("altmesh.cli", "status", "--config", str(client))
    assert result.returncode == 1
    assert "no running altmesh" in result.stderr and "Traceback" not in result.stderr
