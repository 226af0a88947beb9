"""The network as playbooks/site.yml built it: a stream from the client (attached to relay1) to the
service (attached to relay2) crosses both relays, the dashboard sees both relays up with their
link, and the service's name resolves DNSSEC-validated on the client host.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from meshhosts import (
    ALTMESH,
    BLOB,
    NODE_CONFIG,
    NS1,
    PAGE_TEXT,
    RELAY1,
    RELAY2,
    SERVICE,
    USER,
    WEB,
    attached_relay,
    eventually,
    mesh_links_up,
    node_status,
    podman_host,
    quote,
    sha256_of_file,
    sha256_through_socks,
    stream_path,
)
from testinfra.host import Host


@pytest.fixture(scope="module")
def user() -> Host:
    return podman_host(USER)


@pytest.fixture(scope="module")
def web() -> Host:
    return podman_host(WEB)


@pytest.fixture(scope="module")
def ns1() -> Host:
    return podman_host(NS1)


def test_the_client_is_attached_to_relay1_and_the_service_to_relay2(user: Host, web: Host) -> None:
    for host in (user, web):
        assert eventually(lambda h=host: node_status(h)["link_state"] == "established")
    assert attached_relay(user) == "relay1"
    assert attached_relay(web) == "relay2"


def test_the_two_relays_hold_their_mesh_link() -> None:
    relay1, relay2 = podman_host(RELAY1), podman_host(RELAY2)
    assert eventually(lambda: mesh_links_up(relay1) == {"relay2"}), mesh_links_up(relay1)
    assert eventually(lambda: mesh_links_up(relay2) == {"relay1"}), mesh_links_up(relay2)


def test_curl_through_the_client_s_socks5_fetches_the_service_s_blob_byte_exact(
    user: Host, web: Host, figures: dict[str, str]
) -> None:
    expected = sha256_of_file(web, BLOB)
    assert sha256_through_socks(user, "blob.bin") == expected
    page = user.check_output(
        f"curl -sS --fail --max-time 20 --socks5-hostname 127.0.0.1:1080 http://{SERVICE}/"
    )
    assert PAGE_TEXT in page
    figures["blob fetched through the mesh"] = f"4 MiB, sha256 {expected[:16]}... equal"


def test_a_stream_from_the_client_to_the_service_crosses_relay1_then_relay2(
    user: Host, figures: dict[str, str]
) -> None:
    path = stream_path(user)
    figures["path of a stream, converged network"] = " -> ".join(["client", *path, "service"])
    assert path == ["relay1", "relay2"]


# Logs in as the first admin inside the dashboard host (the password, made there by the role,
# never leaves it; the session cookie is the token the API takes) and reads GET /api/v1/relays.
DASHBOARD_RELAYS = r"""
import http.cookiejar, json, re, sys, urllib.parse, urllib.request
url = sys.argv[1]
password = open("/root/altmesh-dashboard-admin.password").read().strip()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
opener.addheaders = [("Referer", url + "/auth/login")]
page = opener.open(url + "/auth/login", timeout=10).read().decode()
token = re.search(r"name=\"csrf_token\" type=\"hidden\" value=\"([^\"]+)\"", page).group(1)
form = urllib.parse.urlencode({"csrf_token": token, "username": "admin", "password": password})
opener.open(url + "/auth/login", form.encode(), timeout=10)
print(opener.open(url + "/api/v1/relays", timeout=10).read().decode())
"""


def dashboard_relays(ns1: Host) -> dict[str, dict[str, Any]]:
    address = ns1.check_output("ip -4 -o addr show dev ctl0").split()[3].split("/")[0]
    out = ns1.check_output(f"python3 -c {quote(DASHBOARD_RELAYS)} http://{address}:8080")
    answer = json.loads(out)
    relays = answer["relays"] if isinstance(answer, dict) else answer
    return {relay["name"]: relay for relay in relays}


def relays_up_with_links(relays: dict[str, dict[str, Any]], expected: dict[str, set[str]]) -> bool:
    if set(relays) != set(expected):
        return False
    for name, peers in expected.items():
        relay = relays[name]
        up_links = {link["peer"] for link in relay["links"] if link["state"] == "up"}
        if relay["state"] != "up" or up_links != peers:
            return False
    return True


def test_the_dashboard_lists_both_relays_up_with_their_mesh_link(ns1: Host) -> None:
    expected = {"relay1": {"relay2"}, "relay2": {"relay1"}}
    # links reach the dashboard with heartbeats (every 30 s)
    assert eventually(
        lambda: relays_up_with_links(dashboard_relays(ns1), expected), seconds=75, every=3
    ), dashboard_relays(ns1)


def test_the_service_name_resolves_dnssec_validated_on_the_client_host(
    user: Host, web: Host, ns1: Host
) -> None:
    service = json.loads(web.file("/etc/altmesh/node-card.json").content_string)
    out = user.check_output(f"{ALTMESH} resolve {SERVICE} --config {NODE_CONFIG}")
    assert out.split()[:3] == [SERVICE, service["address"], service["public_key"]], out
    assert "(DNSSEC validated)" in out
    # and by BIND's own validator, from the trust anchor the client's config pins
    config = tomllib.loads(user.file(NODE_CONFIG).content_string)
    anchors = []
    for ds in config["dns"]["trust_anchor"]:
        owner, _class, _type, tag, algorithm, digest_type, digest = ds.split()
        anchors.append(f'{owner} static-ds {tag} {algorithm} {digest_type} "{digest}";')
    user.check_output(
        "printf '%%s\\n' %s > /root/alt.anchors", "trust-anchors { " + " ".join(anchors) + " };"
    )
    server = config["dns"]["servers"][0].rsplit(":", 1)[0]
    delv = user.run(f"delv @{server} -a /root/alt.anchors +root=alt {SERVICE} AAAA")
    assert delv.rc == 0, delv.stderr
    assert "; fully validated" in delv.stdout, delv.stdout
    assert service["address"] in delv.stdout
