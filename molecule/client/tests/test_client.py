"""The client scenario, shown on the running test hosts: a client and a service (a demo page on
127.0.0.1:8000, published as hello.alt) attached to one relay, whose host is also the DNS primary.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import testinfra
from testinfra.host import Host

RUN_ID = os.environ.get("ALTMESH_RUN_ID", "local")  # scripts/molecule.sh: test hosts of this run
RELAY = f"client-relay-{RUN_ID}"
WEB = f"client-web-{RUN_ID}"
USER = f"client-user-{RUN_ID}"
ALTMESH = "/opt/altmesh/venv/bin/altmesh"
CONFIG = "/etc/altmesh/node.toml"
PAGE_TEXT = f"Hello from {WEB}"


def podman_host(name: str) -> Host:
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def relay() -> Host:
    return podman_host(RELAY)


@pytest.fixture(scope="module")
def web() -> Host:
    return podman_host(WEB)


@pytest.fixture(scope="module")
def user() -> Host:
    return podman_host(USER)


def card(host: Host, path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(host.file(path).content_string)
    return data


def status(host: Host) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        host.check_output(f"{ALTMESH} status --json --config {CONFIG}")
    )
    return data


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def unit_property(host: Host, unit: str, name: str) -> str:
    return str(host.check_output(f"systemctl show --property {name} --value {unit}"))


@pytest.mark.parametrize(
    ("name", "unit", "command"),
    [
        (USER, "altmesh-client.service", "altmesh up"),
        (WEB, "altmesh-service.service", "altmesh serve"),
    ],
)
def test_each_node_runs_its_command_under_a_hardened_unit(
    name: str, unit: str, command: str
) -> None:
    host = podman_host(name)
    assert unit_property(host, unit, "ActiveState") == "active"
    assert unit_property(host, unit, "User") == "altmesh"
    assert unit_property(host, unit, "NoNewPrivileges") == "yes"
    assert unit_property(host, unit, "ProtectSystem") == "strict"
    assert unit_property(host, unit, "CapabilityBoundingSet") == ""
    assert command.split()[1] in unit_property(host, unit, "ExecStart")
    key = host.file("/etc/altmesh/node.key")
    assert (key.user, key.mode) == ("altmesh", 0o600)


def test_both_nodes_are_attached_to_the_relay(relay: Host, web: Host, user: Host) -> None:
    relay_card = card(relay, "/etc/altmesh/relay-card.json")
    for host in (web, user):
        assert eventually(lambda h=host: status(h)["link_state"] == "established")
        now = status(host)
        assert now["relay"] == relay_card["endpoints"][0]
        assert now["relay_key"] == relay_card["public_key"]


def test_the_client_config_holds_the_relay_the_resolvers_and_the_trust_anchor(
    relay: Host, user: Host
) -> None:
    config = user.file(CONFIG).content_string
    relay_card = card(relay, "/etc/altmesh/relay-card.json")
    assert f'public_key = "{relay_card["public_key"]}"' in config
    anchor = relay.check_output(
        "dig @127.0.0.1 +noall +answer +norecurse alt DNSKEY | grep -E 'DNSKEY\\s+257 '"
        " | dnssec-dsfromkey -a SHA-256 -f - alt"
    )
    key_tag, algorithm, digest_type, digest = anchor.split()[3:7]
    assert f"alt. IN DS {key_tag} {algorithm} {digest_type} {digest}" in config
    assert relay.check_output("hostname -I").split()[0] + ":53" in config
    assert "OK (client)" in user.check_output(f"{ALTMESH} check-config {CONFIG}")


def test_the_service_name_and_key_are_in_the_zone_with_the_key_made_on_the_service_host(
    relay: Host, web: Host
) -> None:
    service = card(web, "/etc/altmesh/node-card.json")
    assert service["public_key"] == web.file("/etc/altmesh/node.key.pub").content_string.strip()
    aaaa = relay.check_output("dig @127.0.0.1 +short +norecurse hello.alt AAAA").split()
    txt = relay.check_output("dig @127.0.0.1 +short +norecurse hello.alt TXT").split()
    assert aaaa == [service["address"]]
    assert txt == [f'"{service["key_txt"]}"']


def test_the_client_resolves_the_service_dnssec_validated(web: Host, user: Host) -> None:
    service = card(web, "/etc/altmesh/node-card.json")
    out = user.check_output(f"{ALTMESH} resolve hello.alt --config {CONFIG}")
    assert out.split()[:3] == ["hello.alt", service["address"], service["public_key"]], out
    assert "(DNSSEC validated)" in out


def test_curl_through_the_client_s_socks5_fetches_the_service_s_page_through_the_relay(
    user: Host,
) -> None:
    def fetched() -> bool:
        page = user.run("curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://hello.alt/")
        return page.rc == 0 and PAGE_TEXT in page.stdout

    assert eventually(fetched), user.run(
        "curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://hello.alt/"
    )
    assert status(user)["streams_total"] >= 1


def test_the_client_s_forward_reaches_the_service_too(user: Host) -> None:
    page = user.run("curl -sS --max-time 10 http://127.0.0.1:8080/")
    assert page.rc == 0 and PAGE_TEXT in page.stdout, page.stderr


def test_a_port_the_service_does_not_accept_is_refused(user: Host) -> None:
    page = user.run(
        "curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://hello.alt:8000/"
    )
    assert page.rc != 0
    assert PAGE_TEXT not in page.stdout
