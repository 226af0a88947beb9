"""The mesh scenario's test hosts and what the tests do with them (molecule.yml describes the
topology): names, podman commands run on the controller, the client's streams and status.

The tests run in file order (test_1_*, test_2_*, test_3_*): the network as converged, then relay3
added, then failures injected, each restored before the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import testinfra
from testinfra.host import Host

RUN_ID = os.environ.get("ALTMESH_RUN_ID", "local")  # scripts/molecule.sh: test hosts of this run
NS1 = f"mesh-ns1-{RUN_ID}"  # DNS primary and dashboard
NS2 = f"mesh-ns2-{RUN_ID}"  # DNS secondary
RESOLVER = f"mesh-resolver-{RUN_ID}"  # the network's resolver
RELAY1 = f"mesh-relay1-{RUN_ID}"
RELAY2 = f"mesh-relay2-{RUN_ID}"
RELAY3 = f"mesh-relay3-{RUN_ID}"  # added by test_2_added_relay.py
USER = f"mesh-user-{RUN_ID}"  # the client, bootstrapped to relay1
WEB = f"mesh-web-{RUN_ID}"  # the service hello.alt, bootstrapped to relay2
RELAY_HOSTS = {"relay1": RELAY1, "relay2": RELAY2, "relay3": RELAY3}
NETWORK_L12 = f"mesh-l12-{RUN_ID}"  # the network of the relay1 - relay2 link, and of nothing else
NETWORK_B = f"mesh-b-{RUN_ID}"  # relay2, relay3 and the service
SERVICE = "hello.alt"
ALTMESH = "/opt/altmesh/venv/bin/altmesh"
NODE_CONFIG = "/etc/altmesh/node.toml"
BLOB = "/srv/altmesh-demo-web/blob.bin"  # prepare.yml: 4 MiB of random bytes
PAGE_TEXT = f"Hello from {WEB}"


def podman_host(name: str) -> Host:
    return testinfra.get_host(f"podman://{name}")


def podman(*args: str) -> str:
    """A podman command on the controller (where the verifier runs)."""
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def eventually(check: Callable[[], bool], seconds: float = 30.0, every: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def relay_card(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        podman_host(name).file("/etc/altmesh/relay-card.json").content_string
    )
    return data


def node_status(host: Host) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        host.check_output(f"{ALTMESH} status --json --config {NODE_CONFIG}")
    )
    return data


def attached_relay(host: Host) -> str:
    """The name of the relay (relay1..3) a client or service is linked to now (from its status,
    so that no relay host is asked: one may be paused)."""
    status = node_status(host)
    name = status.get("relay_name")
    if status.get("link_state") != "established" or name not in RELAY_HOSTS:
        raise AssertionError(f"{host} is linked to no relay of the scenario: {status}")
    return str(name)


_KEYS: dict[str, str] = {}


def relay_public_key(name: str) -> str:
    if name not in _KEYS:
        _KEYS[name] = str(relay_card(name)["public_key"])
    return _KEYS[name]


def mesh_links_up(host: Host) -> set[str]:
    """The peers a relay's metrics show a mesh link up to."""
    metrics = host.run("curl -sf --max-time 5 http://127.0.0.1:9400/metrics")
    if metrics.rc != 0:
        return set()
    prefix = 'altmesh_mesh_link_up{peer="'
    return {
        line[len(prefix) :].split('"', 1)[0]
        for line in metrics.stdout.splitlines()
        if line.startswith(prefix) and line.endswith("} 1.0")
    }


def main_pid(host: Host, unit: str = "altmesh-relay.service") -> int:
    return int(host.check_output(f"systemctl show --property MainPID --value {unit}"))


def sha256_of_file(host: Host, path: str) -> str:
    return str(host.check_output(f"sha256sum {path}").split()[0])


def sha256_through_socks(user: Host, path: str) -> str:
    """Fetch http://hello.alt/PATH through the client's SOCKS5 and hash what arrived."""
    fetched = user.run(
        "bash -o pipefail -c %s",
        "curl -sS --fail --max-time 30 --socks5-hostname 127.0.0.1:1080 "
        f"http://{SERVICE}/{path} | sha256sum",
    )
    assert fetched.rc == 0, fetched.stderr
    return str(fetched.stdout.split()[0])


def relay_name_of_label(label: str) -> str:
    """A relay names its mesh peers in a stream's path; others by the start of their key."""
    if label in RELAY_HOSTS:
        return label
    for name, host in RELAY_HOSTS.items():
        if relay_public_key(host).startswith(label):
            return name
    return label


# On the client host: open a stream to the service through SOCKS5, send a request, and keep the
# stream open while asking the client for its status, whose open streams carry their path.
STREAM_PATH = r"""
import json, socket, subprocess, sys, time
name, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", 1080), timeout=10)
sock.sendall(b"\x05\x01\x00")
assert sock.recv(2) == b"\x05\x00", "SOCKS5 refused"
sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + port.to_bytes(2, "big"))
reply = sock.recv(10)
if reply[1] != 0:
    sys.exit(f"SOCKS5 reply {reply[1]} for {name}:{port}")
deadline = time.monotonic() + 5
while True:
    status = json.loads(subprocess.run(
        ["/opt/altmesh/venv/bin/altmesh", "status", "--json", "--config", "/etc/altmesh/node.toml"],
        check=True, capture_output=True, text=True).stdout)
    paths = [stream["path"] for stream in status["streams"] if stream.get("path")]
    if paths or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(json.dumps(paths[0] if paths else []))
"""


def stream_path(user: Host) -> list[str]:
    """The relays a new stream from the client to the service crosses, by name; [] when the
    stream could not be opened."""
    opened = user.run(f"python3 -c {quote(STREAM_PATH)} {SERVICE} 80")
    if opened.rc != 0:
        return []
    return [relay_name_of_label(label) for label in json.loads(opened.stdout)]


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def network_addresses(container: str) -> dict[str, str]:
    """The container's IPv4 address on each of its podman networks."""
    networks = json.loads(podman("inspect", container))[0]["NetworkSettings"]["Networks"]
    return {name: str(network["IPAddress"]) for name, network in networks.items()}


# The interface each network of the scenario has in a test host (molecule.yml names them, and the
# inventory reads addresses from facts by these names).
INTERFACES = {
    f"mesh-{net}-{RUN_ID}": name
    for net, name in (("ctl", "ctl0"), ("a", "neta"), ("b", "netb"), ("l12", "l12"))
}


def connect(network: str, container: str, address: str) -> None:
    """`podman network connect` with the address given, and the interface named as molecule.yml
    names it (podman names a connected interface ethN): a later playbook run finds the
    address under the name the inventory uses."""
    podman("network", "connect", "--ip", address, network, container)
    wanted = INTERFACES[network]
    found = podman("exec", container, "ip", "-o", "-4", "addr", "show", "to", address).split()
    if found and found[1] != wanted:
        current = found[1]
        rename = f"ip link set {current} down && ip link set {current} name {wanted}"
        podman("exec", container, "sh", "-c", f"{rename} && ip link set {wanted} up")


def start_with_addresses(container: str, addresses: dict[str, str]) -> None:
    """Start a killed test host again with the addresses it had: podman gives a started container
    new ones, and a relay's advertised endpoints (its config, DNS) name the old ones."""
    podman("start", container)
    for network, address in network_addresses(container).items():
        if address != addresses[network]:
            podman("network", "disconnect", network, container)
            connect(network, container, addresses[network])
    assert network_addresses(container) == addresses
