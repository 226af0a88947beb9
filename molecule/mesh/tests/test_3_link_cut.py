"""A link cut with `podman network disconnect`, then reconnected (relay3 was added by
test_2_added_relay.py). Each relay link has a network of its own (molecule.yml): disconnecting
relay1 from l12 cuts the link relay1 - relay2 and nothing else, so new streams from the client
(on relay1) to the service (on relay2) must go through relay3. Reconnected with its address, the
link comes back; with the path through relay3 cut in turn (relay3 disconnected from b, the
network of relay2 - relay3), new streams take the restored link.

Which of the two paths the mesh prefers while both are up depends on the links' round-trip
times (docs/routing.md, "Costs and hysteresis"): on a loaded machine two fast hops can cost less
than one slow one. So each step cuts the other path rather than expecting a preference.
"""

from __future__ import annotations

import time

from meshhosts import (
    NETWORK_B,
    NETWORK_L12,
    RELAY1,
    RELAY2,
    RELAY3,
    USER,
    WEB,
    attached_relay,
    connect,
    eventually,
    mesh_links_up,
    network_addresses,
    podman,
    podman_host,
    stream_path,
)
from testinfra.host import Host


def path_within(user: Host, wanted: list[str], seconds: float) -> tuple[float | None, list[str]]:
    """Open new streams until one takes the path wanted: after how long, and the last path."""
    started = time.monotonic()
    path: list[str] = []
    while time.monotonic() - started < seconds:
        path = stream_path(user)
        if path == wanted:
            return time.monotonic() - started, path
        time.sleep(0.2)
    return None, path


def reconnect(network: str, container: str, address: str) -> None:
    connect(network, container, address)


def test_the_client_is_on_relay1_and_the_service_on_relay2_before_the_cut() -> None:
    assert attached_relay(podman_host(USER)) == "relay1"
    assert attached_relay(podman_host(WEB)) == "relay2"


def test_with_the_relay1_relay2_link_cut_new_streams_go_through_relay3(
    figures: dict[str, str],
) -> None:
    user, relay1 = podman_host(USER), podman_host(RELAY1)
    address = network_addresses(RELAY1)[NETWORK_L12]
    podman("network", "disconnect", NETWORK_L12, RELAY1)
    try:
        rerouted, path = path_within(user, ["relay1", "relay3", "relay2"], seconds=30)
        assert rerouted is not None, f"new streams take {path}"
        assert eventually(lambda: "relay2" not in mesh_links_up(relay1))
    finally:
        reconnect(NETWORK_L12, RELAY1, address)
    figures["link relay1-relay2 cut (network disconnect): a new stream through relay3 (s)"] = (
        f"{rerouted:.1f}"
    )


def test_the_reconnected_link_comes_back_and_new_streams_use_it(figures: dict[str, str]) -> None:
    user, relay1, relay2 = podman_host(USER), podman_host(RELAY1), podman_host(RELAY2)
    started = time.monotonic()
    assert eventually(lambda: "relay2" in mesh_links_up(relay1), seconds=90)
    assert eventually(lambda: "relay1" in mesh_links_up(relay2))
    figures["link relay1-relay2 reconnected: up again after (s)"] = (
        f"{time.monotonic() - started:.1f}"
    )
    address = network_addresses(RELAY3)[NETWORK_B]
    podman("network", "disconnect", NETWORK_B, RELAY3)  # the other path: relay3 - relay2
    try:
        used, path = path_within(user, ["relay1", "relay2"], seconds=90)
        assert used is not None, f"with relay3 - relay2 cut, new streams take {path}"
    finally:
        reconnect(NETWORK_B, RELAY3, address)
    figures["relay2-relay3 cut in turn: a new stream on the restored link (s)"] = f"{used:.1f}"
    relay3 = podman_host(RELAY3)
    assert eventually(lambda: mesh_links_up(relay3) == {"relay1", "relay2"}, seconds=90)
