"""Config files: valid ones load into typed settings; every mistake names its field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from altmesh.config import ConfigError, load_config, parse_forward, parse_host_port

KEY = "uBbXlvDVp4S+D5lL7mwcZzWm1ZDRxdm+RhvMbbWCyUo="
ANCHOR = "alt. IN DS 12345 13 2 " + "AB" * 32

RELAY = f"""
role = "relay"
[network]
name = "testnet"
prefix = "fd12:3456:789a::/48"
[node]
private_key_file = "relay.key"
state_dir = "state"
[relay]
listen = "127.0.0.1:7400"
metrics_listen = "127.0.0.1:9400"
policy = "allowlist"
allowed_keys = ["{KEY}"]
"""

CLIENT = f"""
role = "client"
[network]
name = "testnet"
prefix = "fd12:3456:789a::/48"
[node]
private_key_file = "/etc/altmesh/node.key"
state_dir = "/var/lib/altmesh"
[link]
rekey_after_seconds = 5
[[relays]]
address = "[::1]:7400"
public_key = "{KEY}"
[dns]
servers = ["127.0.0.1:5353"]
trust_anchor = "{ANCHOR}"
[client]
socks_listen = "127.0.0.1:1080"
forwards = ["8080:web.alt:80"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


def test_relay_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, RELAY))
    assert config.role == "relay"
    assert config.relay is not None
    assert config.relay.policy == "allowlist"
    assert config.relay.listen.port == 7400
    assert config.node.private_key_file == tmp_path.resolve() / "relay.key"
    assert str(config.network.prefix) == "fd12:3456:789a::/48"


def test_client_config_loads_relays_dns_and_forwards(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CLIENT))
    assert config.relays[0].address.host == "::1"
    assert config.link.rekey_after_seconds == 5
    assert config.link.handshake_timeout_seconds == 10.0  # the default
    assert config.client is not None
    assert str(config.client.forwards[0]) == "8080:web.alt:80"
    assert config.client.control_socket == Path("/var/lib/altmesh/control.sock")


def test_handshake_timeout_is_configurable(tmp_path: Path) -> None:
    text = CLIENT.replace("rekey_after_seconds = 5", "handshake_timeout_seconds = 2.5")
    assert load_config(write(tmp_path, text)).link.handshake_timeout_seconds == 2.5


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (('role = "relay"', 'role = "router"'), "role", "not one of"),
        (("fd12:3456:789a::/48", "fd12:3456::/32"), "network.prefix", "/48"),
        (("fd12:3456:789a::/48", "2001:db8:1::/48"), "network.prefix", "ULA"),
        (('listen = "127.0.0.1:7400"', 'listen = "127.0.0.1:99999"'), "relay.listen", "65535"),
        (('policy = "allowlist"', 'policy = "closed"'), "relay.policy", "open"),
        (
            (f'allowed_keys = ["{KEY}"]', 'allowed_keys = ["abc"]'),
            "relay.allowed_keys[0]",
            "base64",
        ),
        (('state_dir = "state"', 'stat_dir = "state"'), "node.state_dir", "required"),
        (("[relay]", "[relay]\nbogus = 1"), "relay.bogus", "unknown option"),
    ],
)
def test_relay_config_errors_name_the_field(
    tmp_path: Path, change: tuple[str, str], field: str, words: str
) -> None:
    error = error_of(tmp_path, RELAY.replace(*change))
    assert error.field == field
    assert words in error.problem


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            ("rekey_after_seconds = 5", "rekey_after_seconds = 500"),
            "link.rekey_after_seconds",
            "outside",
        ),
        (('"8080:web.alt:80"', '"8080:web.com:80"'), "client.forwards[0]", ".alt"),
        (('"127.0.0.1:1080"', '"0.0.0.0:1080"'), "client.socks_listen", "loopback"),
        (('"8080:web.alt:80"', '"8080:web.alt"'), "client.forwards[0]", "LOCAL_PORT:NAME:PORT"),
        ((ANCHOR, "com. IN DS 1 13 2 AB"), "dns.trust_anchor", "must be alt."),
        (('address = "[::1]:7400"', 'address = "::1:7400"'), "relays[0].address", "[ADDRESS]"),
        (("[[relays]]", "[[relay]]"), "relays", "at least one [[relays]]"),
        (
            ("rekey_after_seconds = 5", "rekey_after_seconds = 5\nhandshake_timeout_seconds = 0"),
            "link.handshake_timeout_seconds",
            "outside 1..60",
        ),
    ],
)
def test_client_config_errors_name_the_field(
    tmp_path: Path, change: tuple[str, str], field: str, words: str
) -> None:
    error = error_of(tmp_path, CLIENT.replace(*change))
    assert error.field.startswith(field)
    assert words in error.problem


def test_broken_toml_is_reported_not_raised(tmp_path: Path) -> None:
    error = error_of(tmp_path, "role = \n")
    assert "not valid TOML" in error.problem


def test_host_port_and_forward_parsing() -> None:
    assert parse_host_port("[fd00::1]:80", "x").host == "fd00::1"
    assert parse_host_port("relay.example", "x", 7400).port == 7400
    assert parse_forward("8080:Web.Alt:443", "x").name == "web.alt"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "altmesh.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_exits_zero_on_a_good_file(tmp_path: Path) -> None:
    result = run_cli("check-config", str(write(tmp_path, RELAY)))
    assert result.returncode == 0, result.stderr
    assert "OK (relay)" in result.stdout


def test_check_config_exits_non_zero_naming_the_field(tmp_path: Path) -> None:
    result = run_cli("check-config", str(write(tmp_path, RELAY.replace("policy", "polic"))))
    assert result.returncode == 1
    assert "relay.polic: unknown option" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_on_a_missing_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_cli("check-config", str(tmp_path / "absent.toml"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr
