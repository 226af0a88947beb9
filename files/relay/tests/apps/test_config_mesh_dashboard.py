"""A relay's [relay] identity, [dns], [mesh] and [dashboard] tables: defaults, ranges, rules."""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path

import pytest
from altmesh.config import DASHBOARD_RESERVED_NAMES, ConfigError, HostPort, load_config
from altmesh.dnsrecords import RELAY_NAME_PATTERN

from .configs import ANCHOR, OTHER_KEY, PEER_KEY, THIRD_KEY, Node, make_node, relay_text

DNS = f'[dns]\nservers = ["127.0.0.1:5353"]\ntrust_anchor = "{ANCHOR}"\n'
PEER = f"""[[mesh.peers]]
name = "relay2"
public_key = "{PEER_KEY}"
endpoints = ["10.0.0.2:7400"]
"""
MESH = relay_text('name = "relay1"\n') + "[mesh]\n" + PEER


@pytest.fixture
def node(tmp_path: Path) -> Node:
    token = tmp_path / "node" / "dashboard.token"
    token.parent.mkdir(parents=True)
    token.write_text("relay-token\n")
    token.chmod(0o600)
    return make_node(tmp_path)


def dashboard_table(extra: str = "") -> str:
    return (
        '[dashboard]\nurl = "https://dashboard.example:8443"\ntoken_file = "dashboard.token"\n'
        + (extra)
    )


def problems_of(node: Node, text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(node.write(text))
    return [(p.field, p.problem) for p in info.value.problems]


def test_mesh_defaults_and_a_peer_load(node: Node) -> None:
    config = load_config(node.write(MESH))
    assert config.relay is not None and config.mesh is not None
    assert config.relay.name == "relay1"
    assert config.relay.advertise == (HostPort("127.0.0.1", 7400),)  # listen, not a wildcard
    mesh = config.mesh
    assert (mesh.dns_discovery, mesh.dns_refresh_seconds, mesh.hop_limit) == (False, 30.0, 16)
    assert (mesh.probe_interval_seconds, mesh.dead_after_seconds) == (0.5, 2.0)
    assert (mesh.reconnect_min_seconds, mesh.reconnect_max_seconds) == (0.5, 30.0)
    (peer,) = mesh.peers
    assert (peer.name, peer.public_key, peer.previous_public_key) == ("relay2", PEER_KEY, None)
    assert peer.endpoints == (HostPort("10.0.0.2", 7400),)


def test_dns_discovery_is_on_by_default_when_the_relay_has_dns(node: Node) -> None:
    config = load_config(node.write(MESH + DNS))
    assert config.dns is not None and config.mesh is not None
    assert config.mesh.dns_discovery is True
    off = MESH.replace("[mesh]\n", "[mesh]\ndns_discovery = false\n") + DNS
    assert load_config(node.write(off)).mesh.dns_discovery is False  # type: ignore[union-attr]


def test_dashboard_defaults_load(node: Node) -> None:
    config = load_config(node.write(relay_text('name = "relay1"\n') + dashboard_table()))
    dashboard = config.dashboard
    assert dashboard is not None
    assert dashboard.url == "https://dashboard.example:8443"
    assert dashboard.token_file == node.dir.resolve() / "dashboard.token"
    assert (dashboard.ca_file, dashboard.timeout_seconds, dashboard.heartbeat_seconds) == (
        None,
        5.0,
        0.0,
    )
    assert (dashboard.event_queue_max, dashboard.event_batch_max) == (10_000, 500)


WILDCARD = relay_text('name = "relay1"\n').replace("127.0.0.1:7400", "0.0.0.0:7400")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (MESH.replace('name = "relay1"\n', ""), "relay.name", "is required with [mesh]"),
        (MESH.replace('"relay1"', '"Relay_1"'), "relay.name", "one DNS label"),
        (MESH.replace('"relay1"', '"-relay"'), "relay.name", "one DNS label"),
        (MESH.replace('"relay1"', '"' + "r" * 64 + '"'), "relay.name", "1-63"),
        (WILDCARD + "[mesh]\n", "relay.advertise", "0.0.0.0 (every address)"),
        (
            MESH.replace('name = "relay1"', 'name = "relay1"\nadvertise = ["0.0.0.0:7400"]'),
            "relay.advertise[0]",
            "every address",
        ),
        (
            MESH.replace(
                'name = "relay1"',
                'name = "relay1"\nadvertise = ['
                + ", ".join(f'"10.0.0.{i}:7400"' for i in range(17))
                + "]",
            ),
            "relay.advertise",
            "0 to 16 entries",
        ),
        (MESH + "dns_discovery = true\n", "mesh.peers[0].dns_discovery", "unknown option"),
        (MESH.replace("[mesh]\n", "[mesh]\ndns_discovery = true\n"), "mesh.dns_discovery", "[dns]"),
        (
            MESH.replace("[mesh]\n", "[mesh]\ndead_after_seconds = 0.5\n"),
            "mesh.dead_after_seconds",
            "greater than probe_interval_seconds",
        ),
        (MESH.replace("[mesh]\n", "[mesh]\nhop_limit = 65\n"), "mesh.hop_limit", "1..64"),
        (
            MESH.replace("[mesh]\n", "[mesh]\nprobe_interval_seconds = 0.05\n"),
            "mesh.probe_interval_seconds",
            "0.1..60",
        ),
        (
            MESH.replace("[mesh]\n", "[mesh]\ndns_refresh_seconds = 4\n"),
            "mesh.dns_refresh_seconds",
            "5..3600",
        ),
        (
            MESH.replace(
                "[mesh]\n", "[mesh]\nreconnect_min_seconds = 5\nreconnect_max_seconds = 1\n"
            ),
            "mesh.reconnect_max_seconds",
            ">= reconnect_min_seconds",
        ),
        (MESH + PEER, "mesh.peers[1].name", "'relay2' is also mesh.peers[0].name"),
        (
            MESH + PEER.replace('"relay2"', '"relay3"'),
            "mesh.peers[1].public_key",
            "this key is also mesh.peers[0].public_key",
        ),
        (
            MESH.replace("endpoints", f'previous_public_key = "{PEER_KEY}"\nendpoints'),
            "mesh.peers[0].previous_public_key",
            "also mesh.peers[0].public_key",
        ),
        (MESH.replace('"relay2"', '"relay1"'), "mesh.peers[0].name", "this relay's own name"),
        (
            MESH.replace('endpoints = ["10.0.0.2:7400"]', "endpoints = []"),
            "mesh.peers[0].endpoints",
            "1 to 16",
        ),
        (
            MESH.replace('endpoints = ["10.0.0.2:7400"]\n', ""),
            "mesh.peers[0].endpoints",
            "required",
        ),
        (MESH.replace("10.0.0.2:7400", "999.0.0.2:7400"), "mesh.peers[0].endpoints[0]", "IPv4"),
        (MESH.replace(f'"{PEER_KEY}"', '"short"'), "mesh.peers[0].public_key", "base64"),
    ],
)
def test_relay_identity_and_mesh_mistakes_name_their_field(
    node: Node, text: str, field: str, words: str
) -> None:
    problems = problems_of(node, text)
    assert any(words in problem for f, problem in problems if f == field), problems


def test_a_peer_with_this_relays_own_key_is_refused(node: Node) -> None:
    text = MESH.replace(f'public_key = "{PEER_KEY}"', f'public_key = "{node.public_b64}"')
    assert problems_of(node, text) == [
        ("mesh.peers[0].public_key", "is this relay's own key (node.private_key_file)")
    ]


def test_a_rotating_peer_may_list_its_previous_key(node: Node) -> None:
    text = MESH.replace("endpoints", f'previous_public_key = "{OTHER_KEY}"\nendpoints')
    text += PEER.replace('"relay2"', '"relay3"').replace(PEER_KEY, THIRD_KEY)
    config = load_config(node.write(text))
    assert config.mesh is not None
    assert [(p.name, p.previous_public_key) for p in config.mesh.peers] == [
        ("relay2", OTHER_KEY),
        ("relay3", None),
    ]


BASE = relay_text('name = "relay1"\n')


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (relay_text() + dashboard_table(), "relay.name", "is required with [dashboard]"),
        (
            relay_text('name = "mesh"\n') + dashboard_table(),
            "relay.name",
            "reserved by the dashboard",
        ),
        (BASE + dashboard_table().replace("https://", "ftp://"), "dashboard.url", "https://"),
        (BASE + dashboard_table().replace(":8443", ":8443/?a=1"), "dashboard.url", "query"),
        (BASE + dashboard_table().replace(":8443", ":8443/#top"), "dashboard.url", "fragment"),
        (BASE + dashboard_table().replace("https://", "https://u:p@"), "dashboard.url", "password"),
        (BASE + dashboard_table().replace(":8443", ":99999"), "dashboard.url", "port"),
        (
            BASE + dashboard_table().replace("dashboard.example:8443", ""),
            "dashboard.url",
            "no host",
        ),
        (BASE + dashboard_table("timeout_seconds = 0\n"), "dashboard.timeout_seconds", "0.5..60"),
        (
            BASE + dashboard_table("heartbeat_seconds = 0.5\n"),
            "dashboard.heartbeat_seconds",
            "below 1",
        ),
        (
            BASE + dashboard_table("event_queue_max = 99\n"),
            "dashboard.event_queue_max",
            "100..10000000",
        ),
        (BASE + dashboard_table("event_batch_max = 501\n"), "dashboard.event_batch_max", "1..500"),
        (
            BASE + dashboard_table("event_queue_max = 100\nevent_batch_max = 200\n"),
            "dashboard.event_batch_max",
            "must not exceed event_queue_max (100)",
        ),
        (
            BASE + dashboard_table('ca_file = "ca.pem"\n').replace("https://", "http://"),
            "dashboard.ca_file",
            "only used for an https:// url",
        ),
        (BASE + dashboard_table('ca_file = "ca.pem"\n'), "dashboard.ca_file", "does not exist"),
        (
            BASE
            + dashboard_table().replace('token_file = "dashboard.token"', 'token_file = "none"'),
            "dashboard.token_file",
            "token file does not exist",
        ),
        (
            BASE + dashboard_table().replace('token_file = "dashboard.token"\n', ""),
            "dashboard.token_file",
            "required",
        ),
    ],
)
def test_dashboard_mistakes_name_their_field(node: Node, text: str, field: str, words: str) -> None:
    problems = problems_of(node, text)
    assert any(words in problem for f, problem in problems if f == field), problems


def test_a_token_file_others_can_read_is_refused_like_a_key(node: Node) -> None:
    (node.dir / "dashboard.token").chmod(0o640)
    problems = problems_of(node, BASE + dashboard_table())
    assert [f for f, _ in problems] == ["dashboard.token_file"]
    assert "chmod 600" in problems[0][1]


def test_an_empty_token_file_is_refused(node: Node) -> None:
    (node.dir / "dashboard.token").write_text("\n")
    assert [f for f, _ in problems_of(node, BASE + dashboard_table())] == ["dashboard.token_file"]


def test_a_ca_file_must_hold_a_loadable_certificate(node: Node, tmp_path: Path) -> None:
    ca = node.dir / "ca.pem"
    ca.write_text("not a certificate\n")
    text = BASE + dashboard_table('ca_file = "ca.pem"\n')
    assert problems_of(node, text) == [
        ("dashboard.ca_file", f"{ca.resolve()} holds no PEM CA certificate that can be loaded")
    ]
    key, cert = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ca.write_text(cert.read_text())
    ssl.create_default_context(cafile=str(ca))  # the same loader the check uses
    assert load_config(node.write(text)).dashboard is not None


# The dashboard refuses at registration what it does not accept as a relay name, so the relay's
# config must use the same rule: these pin the copies in the two distributions together.


def test_the_relay_name_rule_is_the_dashboards() -> None:
    from altmesh_dashboard import payloads

    assert payloads.LABEL.pattern == RELAY_NAME_PATTERN


def test_the_reserved_relay_names_are_the_dashboards() -> None:
    from altmesh_dashboard import payloads

    labels = {name for name in payloads.RESERVED_NAMES if re.match(RELAY_NAME_PATTERN, name)}
    assert labels == DASHBOARD_RESERVED_NAMES
