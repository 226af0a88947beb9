"""`altmesh check-config` fails exactly where start-up would, with the same messages, no traceback.

Each case breaks one thing in a valid file; the check, `altmesh-relay --check` and the real
start-up of the daemon (or `altmesh up`) must all refuse it with exit status 1 and the same
`FILE: field: problem` lines, because they run one validation.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from altmesh.testing.ports import free_port

from .configs import Node, client_text, make_node, relay_text, run


def _key_missing(node: Node) -> str:
    node.key_file.unlink()
    return relay_text()


def _key_mode_644(node: Node) -> str:
    node.key_file.chmod(0o644)
    return relay_text()


def _key_is_a_directory(node: Node) -> str:
    node.key_file.unlink()
    node.key_file.mkdir()
    return relay_text()


def _state_dir_is_a_file(node: Node) -> str:
    (node.dir / "state").write_text("not a directory\n")
    return relay_text()


def _capture_is_a_directory(node: Node) -> str:
    (node.dir / "capture").mkdir()
    return relay_text('forwarded_capture_file = "capture"\n')


def _allowed_keys_file_missing(node: Node) -> str:
    return relay_text('policy = "allowlist"\nallowed_keys_file = "allowed.keys"\n')


def _allowed_keys_file_with_a_bad_line(node: Node) -> str:
    (node.dir / "allowed.keys").write_text(f"# peers\n{node.public_b64}\nnot-a-key\n")
    return relay_text('policy = "allowlist"\nallowed_keys_file = "allowed.keys"\n')


def _listen_999(node: Node) -> str:
    return relay_text().replace('listen = "127.0.0.1:7400"', 'listen = "999.1.1.1:7400"')


def _listen_on_an_address_of_another_host(node: Node) -> str:
    return relay_text().replace('listen = "127.0.0.1:7400"', 'listen = "192.0.2.1:7400"')


def _network_name_of_256_bytes(node: Node) -> str:
    return relay_text().replace('name = "testnet"', f'name = "{"é" * 128}"')


RELAY_CASES: list[tuple[str, Callable[[Node], str], str, str]] = [
    ("missing key file", _key_missing, "node.private_key_file", "does not exist"),
    ("key mode 644", _key_mode_644, "node.private_key_file", "chmod 600"),
    ("key path is a directory", _key_is_a_directory, "node.private_key_file", "is a directory"),
    ("state_dir is a file", _state_dir_is_a_file, "node.state_dir", "is a file"),
    (
        "capture file is a directory",
        _capture_is_a_directory,
        "relay.forwarded_capture_file",
        "is a directory",
    ),
    (
        "allowed_keys_file missing",
        _allowed_keys_file_missing,
        "relay.allowed_keys_file",
        "does not exist",
    ),
    (
        "allowed_keys_file with a bad line",
        _allowed_keys_file_with_a_bad_line,
        "relay.allowed_keys_file",
        "line 3",
    ),
    ("listen on 999.1.1.1", _listen_999, "relay.listen", "is not an IP address"),
    (
        "listen on another host's address",
        _listen_on_an_address_of_another_host,
        "relay.listen",
        "is not an address of this host",
    ),
    ("network name of 256 bytes", _network_name_of_256_bytes, "network.name", "256 bytes"),
]


def _assert_refused(result: subprocess.CompletedProcess[str], line_start: str, words: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(line_start)]
    assert lines, result.stderr
    assert words in lines[0]


@pytest.mark.parametrize(
    ("case", "breaks", "field", "words"), RELAY_CASES, ids=[c[0] for c in RELAY_CASES]
)
def test_check_config_and_relay_start_up_refuse_the_same_file_with_the_same_message(
    tmp_path: Path, case: str, breaks: Callable[[Node], str], field: str, words: str
) -> None:
    node = make_node(tmp_path)
    config = node.write(breaks(node))
    line_start = f"{config}: {field}: "
    checked = run("altmesh.cli", "check-config", str(config))
    _assert_refused(checked, line_start, words)
    relay_check = run("altmesh.relay.main", "--config", str(config), "--check")
    _assert_refused(relay_check, line_start, words)
    started = run("altmesh.relay.main", "--config", str(config))
    _assert_refused(started, line_start, words)
    assert started.stderr == checked.stderr
    assert "ready" not in started.stdout


def test_check_config_and_altmesh_up_refuse_duplicate_forward_ports_alike(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    config = node.write(client_text('forwards = ["8080:web.alt:80", "8080:db.alt:5432"]'))
    line_start = f"{config}: client.forwards[1]: "
    checked = run("altmesh.cli", "check-config", str(config))
    _assert_refused(checked, line_start, "local port 8080 is also client.forwards[0]")
    started = run("altmesh.cli", "up", "--config", str(config))
    assert started.stderr == checked.stderr and started.returncode == 1


def test_a_forward_given_on_the_command_line_is_checked_against_the_files(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    config = node.write(client_text('forwards = ["8080:web.alt:80"]'))
    result = run("altmesh.cli", "up", "--config", str(config), "--forward", "8080:db.alt:5432")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "--forward 8080:db.alt:5432: local port 8080 is also client.forwards[0]"
    ]


def test_a_file_that_passes_the_check_starts_the_relay(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    port, metrics = free_port(), free_port()
    config = node.write(
        relay_text()
        .replace("127.0.0.1:7400", f"127.0.0.1:{port}")
        .replace("127.0.0.1:9400", f"127.0.0.1:{metrics}")
    )
    checked = run("altmesh.cli", "check-config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == f"{config}: OK (relay)"
    relay = subprocess.Popen(
        [sys.executable, "-m", "altmesh.relay.main", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "ready" not in line:
            line = relay.stdout.readline()
            if not line and relay.poll() is not None:
                break
        assert "altmesh-relay ready" in line, relay.stderr.read() if relay.stderr else ""
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)


def test_check_config_as_the_installed_path_resolves_relative_paths_there(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    installed = node.write(relay_text())
    # Ansible's `validate:` checks a temporary copy elsewhere: relative paths would look there.
    copy = tmp_path / "ansible-tmp" / "tmpXYZ"
    copy.parent.mkdir()
    copy.write_text(installed.read_text())
    elsewhere = run("altmesh.cli", "check-config", str(copy))
    assert elsewhere.returncode == 1
    assert f"{copy}: node.private_key_file: " in elsewhere.stderr
    as_installed = run("altmesh.cli", "check-config", str(copy), "--as", str(installed))
    assert as_installed.returncode == 0, as_installed.stderr
    assert as_installed.stdout.strip() == f"{installed}: OK (relay)"


def test_relay_rejects_a_client_config(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    config = node.write(client_text())
    result = run("altmesh.relay.main", "--config", str(config))
    assert result.returncode == 1
    assert f"{config}: role: is 'client'; this program runs 'relay'" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_a_running_node_is_a_clear_error(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    config = node.write(client_text())
    result = run("altmesh.cli", "status", "--config", str(config))
    assert result.returncode == 1
    assert "no running altmesh" in result.stderr and "Traceback" not in result.stderr
