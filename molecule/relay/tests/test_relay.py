"""The relay scenario, shown on the running test hosts: two relays and the DNS primary.

What the side effect did before these tests run (side_effect.yml): a client on relay2's host
attached to relay1; a run limited to relay2 gave relay2 a second endpoint; relay1's run then
reloaded it. The links watched: that client's link to relay1 (across the reload) and the mesh
link between the two relays, which each relay reports in its metrics.
"""

from __future__ import annotations

import json
import os
import re
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import testinfra
from testinfra.host import Host

RUN_ID = os.environ.get("ALTMESH_RUN_ID", "local")  # scripts/molecule.sh: test hosts of this run
NS1 = f"relay-ns1-{RUN_ID}"
RELAY1 = f"relay-relay1-{RUN_ID}"
RELAY2 = f"relay-relay2-{RUN_ID}"
RELAYS = {"relay1": RELAY1, "relay2": RELAY2}
ALTMESH = "/opt/altmesh/venv/bin/altmesh"
TEST_CLIENT = "/root/test-client/client.toml"
RELAY_DOCS = Path(__file__).resolve().parents[3] / "docs" / "relay-config.md"


def podman_host(name: str) -> Host:
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def ns1() -> Host:
    return podman_host(NS1)


@pytest.fixture(scope="module")
def relay1() -> Host:
    return podman_host(RELAY1)


@pytest.fixture(scope="module")
def relay2() -> Host:
    return podman_host(RELAY2)


def card(host: Host) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(host.file("/etc/altmesh/relay-card.json").content_string)
    return data


def config(host: Host) -> dict[str, Any]:
    return tomllib.loads(host.file("/etc/altmesh/relay.toml").content_string)


def unit_property(host: Host, name: str) -> str:
    return str(host.check_output(f"systemctl show --property {name} --value altmesh-relay"))


def short_answer(host: Host, name: str, rdtype: str) -> list[str]:
    out = host.check_output(f"dig @127.0.0.1 +time=2 +tries=1 +short +norecurse {name} {rdtype}")
    return sorted(str(out).splitlines())


def eventually(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return check()


def address_of(host: Host) -> str:
    return str(host.check_output("hostname -I").split()[0])


@pytest.mark.parametrize("name", [RELAY1, RELAY2])
def test_each_relay_runs_under_its_hardened_unit(name: str) -> None:
    host = podman_host(name)
    assert unit_property(host, "ActiveState") == "active"
    assert unit_property(host, "User") == "altmesh"
    assert unit_property(host, "NoNewPrivileges") == "yes"
    assert unit_property(host, "ProtectSystem") == "strict"
    assert unit_property(host, "ProtectHome") == "yes"
    # port 7400: no capability at all
    assert unit_property(host, "CapabilityBoundingSet") == ""
    assert unit_property(host, "AmbientCapabilities") == ""
    assert "/var/lib/altmesh/relay" in unit_property(host, "ReadWritePaths")
    assert "kill -HUP" in unit_property(host, "ExecReload")
    pid = unit_property(host, "MainPID")
    status = host.file(f"/proc/{pid}/status").content_string
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status


def documented_malloc_settings() -> dict[str, str]:
    settings = dict(re.findall(r"^(MALLOC_[A-Z_]+_)=(\d+)$", RELAY_DOCS.read_text(), re.M))
    assert len(settings) == 3, settings
    return settings


@pytest.mark.parametrize("name", [RELAY1, RELAY2])
def test_the_relay_process_has_the_malloc_tuning_the_relay_docs_give(name: str) -> None:
    host = podman_host(name)
    pid = unit_property(host, "MainPID")
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    found = dict(line.split("=", 1) for line in environ.splitlines() if line.startswith("MALLOC_"))
    assert found == documented_malloc_settings()


@pytest.mark.parametrize("name", [RELAY1, RELAY2])
def test_the_private_key_is_made_on_the_host_and_readable_by_the_relay_user_only(
    name: str,
) -> None:
    host = podman_host(name)
    key = host.file("/etc/altmesh/relay.key")
    assert (key.user, key.group, key.mode) == ("altmesh", "altmesh", 0o600)
    derived = host.check_output(
        "/opt/altmesh/venv/bin/python3 -c %s",
        "from pathlib import Path; from altmesh.keyfile import read_private_key, "
        "public_from_private, encode_public_key; "
        "print(encode_public_key(public_from_private(read_private_key(Path('/etc/altmesh/relay.key')))))",
    )
    assert derived.strip() == card(host)["public_key"]
    assert (
        key.content_string.strip() not in host.file("/etc/altmesh/relay-card.json").content_string
    )


def test_each_relay_lists_the_other_as_its_mesh_peer_with_the_key_its_host_made(
    relay1: Host, relay2: Host
) -> None:
    # relay2's config was last written by a run limited to relay2 (side_effect.yml): relay1 is
    # still there, read from relay1's host
    for host, other in ((relay1, relay2), (relay2, relay1)):
        peers = config(host)["mesh"]["peers"]
        other_key = other.file("/etc/altmesh/relay.key.pub").content_string.strip()
        assert [(peer["name"], peer["public_key"]) for peer in peers] == [
            (card(other)["name"], other_key)
        ]
        assert peers[0]["endpoints"] == card(other)["endpoints"]


def test_the_peer_change_reached_relay1_as_a_reload_not_a_restart(relay1: Host) -> None:
    relay2_endpoints = config(relay1)["mesh"]["peers"][0]["endpoints"]
    assert len(relay2_endpoints) == 2 and relay2_endpoints[1].endswith(":7401")
    before = json.loads(relay1.file("/root/relay-before.json").content_string)
    assert unit_property(relay1, "MainPID") == before["pid"]
    journal = relay1.check_output("journalctl -u altmesh-relay --no-pager -o cat")
    assert journal.count("reloaded:") == before["reloads"] + 1, journal


def test_a_client_link_to_relay1_is_established_and_survives_the_reload(
    relay1: Host, relay2: Host
) -> None:
    status = json.loads(relay2.check_output(f"{ALTMESH} status --json --config {TEST_CLIENT}"))
    before = json.loads(relay2.file("/root/test-client/status-before.json").content_string)
    assert status["link_state"] == "established", status
    assert status["relay"] == card(relay1)["endpoints"][0]
    assert status["relay_key"] == card(relay1)["public_key"]
    assert status["reconnects"] == before["reconnects"] == 0
    assert status["connected_since"] == before["connected_since"]


def mesh_link_up(host: Host, peer: str) -> bool:
    metrics = host.run("curl -sf --max-time 5 http://127.0.0.1:9400/metrics")
    line = f'altmesh_mesh_link_up{{peer="{peer}"}} 1.0'
    return metrics.rc == 0 and line in metrics.stdout.splitlines()


def test_the_two_relays_hold_a_mesh_link_to_each_other(relay1: Host, relay2: Host) -> None:
    assert eventually(lambda: mesh_link_up(relay1, "relay2")), "relay1 has no link to relay2"
    assert eventually(lambda: mesh_link_up(relay2, "relay1")), "relay2 has no link to relay1"


@pytest.mark.parametrize("name", [RELAY1, RELAY2])
def test_check_config_accepts_the_rendered_config(name: str) -> None:
    out = podman_host(name).check_output(f"{ALTMESH} check-config /etc/altmesh/relay.toml")
    assert "OK (relay)" in out


def test_every_relay_is_in_the_zone_s_dns_sd_relay_set(
    ns1: Host, relay1: Host, relay2: Host
) -> None:
    assert short_answer(ns1, "_altmesh._tcp.alt", "PTR") == [
        "relay1._altmesh._tcp.alt.",
        "relay2._altmesh._tcp.alt.",
    ]
    for name, host in (("relay1", relay1), ("relay2", relay2)):
        relay = card(host)
        assert short_answer(ns1, f"{name}.alt", "AAAA") == [relay["address"]]
        assert short_answer(ns1, f"{name}.alt", "TXT") == [f'"{relay["key_txt"]}"']
        assert short_answer(ns1, f"{name}._altmesh._tcp.alt", "TXT") == [
            f'"txtvers=1" "relay={name}" "{relay["key_txt"]}"'
        ]
        srv = short_answer(ns1, f"{name}._altmesh._tcp.alt", "SRV")
        assert srv == sorted(
            f"0 50 {endpoint.rsplit(':', 1)[1]} ep{index}.{name}.alt."
            for index, endpoint in enumerate(relay["endpoints"])
        )
        for index, endpoint in enumerate(relay["endpoints"]):
            assert short_answer(ns1, f"ep{index}.{name}.alt", "A") == [endpoint.rsplit(":")[0]]
    shared = short_answer(ns1, "_altmesh._tcp.alt", "SRV")
    assert len(shared) == 3  # relay1's endpoint and relay2's two (the limited run's change)


def test_a_relay_name_resolves_dnssec_validated_to_its_address_and_key(
    relay1: Host, relay2: Host
) -> None:
    relay = card(relay1)
    out = relay2.check_output(f"{ALTMESH} resolve relay1.alt --config {TEST_CLIENT}")
    assert out.split()[:3] == ["relay1.alt", relay["address"], relay["public_key"]], out
    assert "(DNSSEC validated)" in out


def test_the_relays_metrics_answer_on_loopback_only(relay1: Host, relay2: Host) -> None:
    metrics = relay1.run("curl -sf --max-time 5 http://127.0.0.1:9400/metrics")
    assert metrics.rc == 0 and re.search(r"^altmesh_links \d", metrics.stdout, re.M), metrics
    outside = relay2.run("curl -sf --max-time 3 http://%s:9400/metrics", address_of(relay1))
    assert outside.rc != 0
