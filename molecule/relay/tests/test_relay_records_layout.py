"""The relay set the relay role publishes (without a dashboard) is the one the dashboard publishes.

One layout, two publishers (docs/dashboard-dns.md, "Relays in DNS"): the dashboard's
`publish_relay` in Python and the role's `templates/relay_records.yml.j2` in Jinja (an Ansible
module on the DNS primary cannot import the dashboard). This test pins them together: the same
relay is published by the real dashboard code into a real named, and rendered by Ansible from the
role's template and variables, and both must give exactly the same records (names, types, data,
TTLs), as the bind_alt record module reads the role's.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dns.name
import pytest
import yaml
from altmesh.dnsrecords import key_txt
from altmesh.protocol.address import network_prefix, node_address
from altmesh.protocol.keys import encode_key
from altmesh.testing.named import NamedServer
from altmesh_dashboard import create_app
from altmesh_dashboard.db import get_session
from altmesh_dashboard.dns.publish import publish_relay
from altmesh_dashboard.dns.zone import ZoneClient
from altmesh_dashboard.models import Relay

REPOSITORY = Path(__file__).resolve().parents[3]
ROLE = REPOSITORY / "roles" / "relay"
ANSIBLE = Path(sys.executable).with_name("ansible")
PREFIX = "fd6d:6f6c:7265::/48"
ZONE = dns.name.from_text("alt.")
DASHBOARD_KEY = "dashboard-key"

Record = tuple[str, str, int, str]  # absolute name, type, TTL, data


def load_bind_alt_records_module() -> ModuleType:
    path = REPOSITORY / "roles" / "bind_alt" / "library" / "bind_alt_zone_records.py"
    spec = importlib.util.spec_from_file_location("bind_alt_zone_records", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def relay_card(name: str, endpoints: list[str]) -> dict[str, Any]:
    """A relay as the role's card describes it, with a fresh key."""
    public_key = secrets.token_bytes(32)
    return {
        "host": f"{name}.example.net",
        "name": name,
        "public_key": encode_key(public_key),
        "address": str(node_address(network_prefix(PREFIX), public_key)),
        "key_txt": key_txt(public_key),
        "endpoints": endpoints,
        "mesh_peers": [],
    }


def role_records(cards: list[dict[str, Any]], tmp_path: Path) -> set[Record]:
    """What the role would reconcile: its template rendered by Ansible with its own variables,
    read the way the bind_alt record module reads records."""
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    variables = {
        key: value for key, value in role_vars.items() if key.startswith("relay__dns_")
    } | {"relay__directory": cards}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    rendered = tmp_path / "records.yml"
    subprocess.run(
        [
            str(ANSIBLE),
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-m",
            "ansible.builtin.template",
            "-a",
            f"src={ROLE / 'templates' / 'relay_records.yml.j2'} dest={rendered}",
            "-e",
            f"@{tmp_path / 'vars.json'}",
        ],
        check=True,
        capture_output=True,
        env={
            "PATH": f"{ANSIBLE.parent}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible"),
        },
    )
    declared = yaml.safe_load(rendered.read_text())
    wanted = load_bind_alt_records_module().desired_rrsets(declared, ZONE, 3600)
    return {
        (name, rdtype, ttl, rdata.to_text())
        for (name, rdtype), (ttl, rdatas) in wanted.items()
        for rdata in rdatas
    }


@pytest.fixture
def named(tmp_path: Path) -> Iterator[tuple[NamedServer, str]]:
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    server = NamedServer.start(
        tmp_path / "named", tsig_keys={DASHBOARD_KEY: secret}, update_key=DASHBOARD_KEY
    )
    try:
        yield server, secret
    finally:
        server.stop()


def dashboard_records(
    cards: list[dict[str, Any]], named: NamedServer, secret: str, tmp_path: Path
) -> set[Record]:
    """What the dashboard publishes for the same relays (before any heartbeat: load unknown)."""
    app = create_app(
        {
            "SECRET_KEY": secrets.token_hex(32),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'dashboard.sqlite3'}",
            "DNS_SERVER": named.address,
            "DNS_PORT": named.port,
            "DNS_ZONE": "alt.",
            "DNS_TSIG_KEY_NAME": DASHBOARD_KEY,
            "DNS_TSIG_SECRET": secret,
            "NETWORK_PREFIX": PREFIX,
        }
    )
    published: set[Record] = set()
    with app.app_context():
        session = get_session()
        for card in cards:
            relay = Relay(
                name=card["name"],
                public_key=card["public_key"],
                address=card["address"],
                endpoints=[
                    {
                        "host": endpoint.rsplit(":", 1)[0].strip("[]"),
                        "port": int(endpoint.rsplit(":", 1)[1]),
                    }
                    for endpoint in card["endpoints"]
                ],
            )
            session.add(relay)
            session.commit()
            for record in publish_relay(relay, ZoneClient.from_config(app.config)):
                published.add(
                    (record.name.to_text(), record.type_text, record.ttl, record.rdata.to_text())
                )
    return published


def test_the_role_publishes_a_relay_exactly_as_the_dashboard_does(
    named: tuple[NamedServer, str], tmp_path: Path
) -> None:
    server, secret = named
    cards = [
        relay_card("relay1", ["192.0.2.10:7400", "[2001:db8::10]:7401", "relay1.example.net:443"]),
        relay_card("relay2", ["198.51.100.20:7400"]),
    ]
    from_dashboard = dashboard_records(cards, server, secret, tmp_path)
    from_role = role_records(cards, tmp_path)
    assert from_role == from_dashboard
    # and the layout is the documented one, not an empty agreement
    assert ("_altmesh._tcp.alt.", "PTR", 60, "relay1._altmesh._tcp.alt.") in from_role
    assert ("ep1.relay1.alt.", "AAAA", 60, "2001:db8::10") in from_role
    assert ("_altmesh._tcp.alt.", "SRV", 60, "0 50 443 relay1.example.net.") in from_role
