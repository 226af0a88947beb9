"""Config files: valid ones load into typed settings; every mistake names its file and field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from altmesh.config import (
    CommandLine,
    ConfigError,
    HostPort,
    load_config,
    parse_config,
    parse_forward,
    parse_host_port,
)
from altmesh.protocol.constants import MAX_NETWORK_NAME_LEN
from hypothesis import given, settings
from hypothesis import strategies as st

from .configs import (
    ANCHOR,
    PEER_KEY,
    Node,
    client_text,
    common,
    make_node,
    relay_text,
    relays_table,
)

RELAY = relay_text(f'policy = "allowlist"\nallowed_keys = ["{PEER_KEY}"]\n')
CLIENT = client_text(
    'forwards = ["8080:web.alt:80"]', tail="[link]\nrekey_after_seconds = 5\n"
).replace('socks_listen = "off"', 'socks_listen = "127.0.0.1:1080"')


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return make_node(tmp_path)


def error_of(node: Node, text: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(node.write(text), **kwargs)  # type: ignore[arg-type]
    return info.value


def test_relay_config_loads_with_paths_relative_to_the_file(node: Node) -> None:
    config = load_config(node.write(RELAY))
    assert config.role == "relay"
    assert config.relay is not None
    assert config.relay.policy == "allowlist"
    assert config.relay.listen.port == 7400
    assert config.node.private_key_file == node.dir.resolve() / "node.key"
    assert config.node.state_dir == node.dir.resolve() / "state"
    assert str(config.network.prefix) == "fd12:3456:789a::/48"


def test_client_config_loads_relays_dns_and_forwards(node: Node) -> None:
    config = load_config(node.write(CLIENT))
    assert config.relays[0].address == HostPort("127.0.0.1", 7400)
    assert config.relays[0].name is None  # optional: shown by its address then
    named = load_config(node.write(CLIENT.replace("[[relays]]", '[[relays]]\nname = "relay1"')))
    assert named.relays[0].name == "relay1"
    assert config.link.rekey_after_seconds == 5
    assert config.link.handshake_timeout_seconds == 10.0  # the default
    assert config.client is not None
    assert str(config.client.forwards[0]) == "8080:web.alt:80"
    assert config.client.control_socket == node.dir.resolve() / "state" / "control.sock"


def test_a_relative_control_socket_resolves_against_the_config_files_directory(
    node: Node,
) -> None:
    text = CLIENT.replace("[client]", '[client]\ncontrol_socket = "run/ctl.sock"')
    config = load_config(node.write(text))
    assert config.client is not None
    assert config.client.control_socket == node.dir.resolve() / "run" / "ctl.sock"


def test_handshake_timeout_is_configurable(node: Node) -> None:
    text = CLIENT.replace("rekey_after_seconds = 5", "handshake_timeout_seconds = 2.5")
    assert load_config(node.write(text)).link.handshake_timeout_seconds == 2.5


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (('role = "relay"', 'role = "router"'), "role", "not one of"),
        (("fd12:3456:789a::/48", "fd12:3456::/32"), "network.prefix", "/48"),
        (("fd12:3456:789a::/48", "2001:db8:1::/48"), "network.prefix", "ULA"),
        (("fd12:3456:789a::/48", "10.0.0.0"), "network.prefix", "is not an IPv6 network"),
        (('listen = "127.0.0.1:7400"', 'listen = "127.0.0.1:99999"'), "relay.listen", "65535"),
        (('listen = "127.0.0.1:7400"', 'listen = "999.1.1.1:7400"'), "relay.listen", "IPv4"),
        (('listen = "127.0.0.1:7400"', 'listen = "relay.example:7400"'), "relay.listen", "IP"),
        (('policy = "allowlist"', 'policy = "closed"'), "relay.policy", "open"),
        (
            (f'allowed_keys = ["{PEER_KEY}"]', 'allowed_keys = ["abc"]'),
            "relay.allowed_keys[0]",
            "base64",
        ),
        (('state_dir = "state"', 'stat_dir = "state"'), "node.state_dir", "required"),
        (("[relay]", "[relay]\nbogus = 1"), "relay.bogus", "unknown option"),
        (
            ('metrics_listen = "127.0.0.1:9400"', 'metrics_listen = "0.0.0.0:7400"'),
            "relay.metrics_listen",
            "also relay.listen",
        ),
    ],
)
def test_relay_config_errors_name_the_file_and_the_field(
    node: Node, change: tuple[str, str], field: str, words: str
) -> None:
    error = error_of(node, RELAY.replace(*change))
    assert error.field == field  # the first problem; a misspelt key is also reported unknown
    assert words in error.problem
    assert str(error).startswith(f"{node.config}: {field}: ")


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
        (
            ('"8080:web.alt:80"', '"8080:web.alt:80", "8080:db.alt:5432"'),
            "client.forwards[1]",
            "local port 8080 is also client.forwards[0]",
        ),
        (
            ('"8080:web.alt:80"', '"1080:web.alt:80"'),
            "client.forwards[0]",
            "also client.socks_listen",
        ),
        ((ANCHOR, "com. IN DS 1 13 2 AB"), "dns.trust_anchor", "must be alt."),
        (
            ('address = "127.0.0.1:7400"', 'address = "::1:7400"'),
            "relays[0].address",
            "[ADDRESS]",
        ),
        (("[[relays]]", "[[relay]]"), "relays", "at least one [[relays]]"),
        (
            ('address = "127.0.0.1:7400"', 'name = "Relay_1"\naddress = "127.0.0.1:7400"'),
            "relays[0].name",
            "one DNS label",
        ),
        (
            ("rekey_after_seconds = 5", "rekey_after_seconds = 5\nhandshake_timeout_seconds = 0"),
            "link.handshake_timeout_seconds",
            "outside 1..60",
        ),
        (("[client]", "[mesh]\n[client]"), "mesh", "unknown option"),
    ],
)
def test_client_config_errors_name_the_file_and_the_field(
    node: Node, change: tuple[str, str], field: str, words: str
) -> None:
    error = error_of(node, CLIENT.replace(*change))
    assert field in [p.field for p in error.problems]
    problem = next(p for p in error.problems if p.field == field)
    assert words in problem.problem
    assert str(problem).startswith(f"{node.config}: {field}: ")


def test_every_problem_of_a_file_is_reported_at_once(node: Node) -> None:
    node.key_file.chmod(0o640)
    text = (
        RELAY.replace("fd12:3456:789a::/48", "fd12::/16")
        .replace('listen = "127.0.0.1:7400"', 'listen = "999.1.1.1"')
        .replace(f'allowed_keys = ["{PEER_KEY}"]', 'allowed_keys = ["abc", "def"]')
        .replace("[relay]", "[link]\nkeepalive_seconds = 0\n[relay]")
    )
    error = error_of(node, text)
    assert [p.field for p in error.problems] == [
        "network.prefix",
        "link.keepalive_seconds",
        "relay.listen",
        "relay.allowed_keys[0]",
        "relay.allowed_keys[1]",
        "node.private_key_file",
    ]
    assert all(line.startswith(f"{node.config}: ") for line in error.lines())
    assert len(str(error).splitlines()) == 6


def test_file_and_start_up_problems_are_reported_together(node: Node) -> None:
    node.key_file.chmod(0o644)
    error = error_of(node, RELAY.replace('policy = "allowlist"', 'policy = "closed"'))
    assert [p.field for p in error.problems] == ["relay.policy", "node.private_key_file"]


def test_broken_toml_is_reported_with_its_line_and_column(node: Node) -> None:
    error = error_of(node, 'role = "relay"\nname = \n')
    assert error.field == "line 2, column 8"
    assert "is not valid TOML" in error.problem
    assert "(at line" not in str(error)


def test_a_network_name_of_256_bytes_is_refused_in_bytes_not_characters(node: Node) -> None:
    name = "\u00e9" * 128  # 128 characters, 256 bytes of UTF-8
    error = error_of(node, RELAY.replace('name = "testnet"', f'name = "{name}"'))
    assert error.field == "network.name"
    assert "256 bytes" in error.problem and str(MAX_NETWORK_NAME_LEN) in error.problem


def test_a_network_name_of_255_bytes_is_accepted_and_usable_by_the_protocol(node: Node) -> None:
    name = "\u00e9" * 127 + "x"  # 255 bytes
    config = load_config(node.write(RELAY.replace('name = "testnet"', f'name = "{name}"')))
    assert config.link_config().network == name


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=0, max_size=140))
def test_every_network_name_the_config_accepts_is_one_the_protocol_accepts(name: str) -> None:
    data = tomllib.loads(RELAY)
    data["network"]["name"] = name
    try:
        config = parse_config(data, Path("/nonexistent/relay.toml"), running=False)
    except ConfigError as error:
        assert [p.field for p in error.problems] == ["network.name"]
        return
    config.link_config()  # raises if the protocol core refuses the name


def test_host_port_and_forward_parsing() -> None:
    assert parse_host_port("[fd00::1]:80", "x").host == "fd00::1"
    assert parse_host_port("relay.example", "x", 7400).port == 7400
    assert parse_forward("8080:Web.Alt:443", "x").name == "web.alt"
    with pytest.raises(ConfigError) as info:
        parse_host_port("256.1.1.1:53", "dns.servers[0]")
    assert "IPv4" in info.value.problem


def test_a_client_config_without_dns_is_refused_only_where_names_are_resolved(
    node: Node,
) -> None:
    text = common("client") + relays_table()
    error = error_of(node, text)
    assert error.field == "dns" and "resolves .alt names" in error.problem
    # `altmesh status` only reads the file; `altmesh serve` runs a service, which needs no DNS.
    assert load_config(node.write(text), running=False).dns is None
    command = CommandLine(
        role="service", service_name="web.alt", service_target=HostPort("127.0.0.1", 8000)
    )
    served = load_config(node.write(text), command=command)
    assert served.role == "service"
    assert served.service is not None and served.service.name == "web.alt"


def test_a_service_config_needs_name_and_target_unless_the_command_gives_them(
    node: Node,
) -> None:
    text = common("service") + relays_table()
    error = error_of(node, text)
    assert [p.field for p in error.problems] == ["service.name", "service.target"]
    assert "altmesh serve" in error.problem
    command = CommandLine(
        role="service", service_name="web.alt", service_target=HostPort("127.0.0.1", 8000)
    )
    assert load_config(node.write(text), command=command).service is not None


def test_command_line_forwards_are_checked_with_the_files(node: Node) -> None:
    command = CommandLine(forwards=(parse_forward("8080:db.alt:5432", "--forward"),))
    error = error_of(node, CLIENT, command=command)
    assert [str(p) for p in error.problems] == [
        "--forward 8080:db.alt:5432: local port 8080 is also client.forwards[0]"
    ]


def test_a_program_refuses_a_config_of_another_role(node: Node) -> None:
    error = error_of(node, CLIENT, roles=("relay",))
    assert error.field == "role" and "'client'" in error.problem
