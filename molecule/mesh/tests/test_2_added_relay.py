"""Adding a relay, exactly as docs/howto-add-relay.md says: relay3 (a test host since create, in
no play's group) is added to the group `relays` of a copy of the inventory, then
`playbooks/relays.yml --limit relay3 --check --diff` and the same without `--check`. No existing
relay restarts; both link to relay3 (from DNS, where the dashboard published it).

The document's further run on all relays (which writes relay3 into their configs and reloads
them) is not part of the scenario: it took 652 s here (a loaded 2-core machine), and the relay
scenario shows that a peer change reloads a relay without a restart.
"""

from __future__ import annotations

import re
import time

import pytest
from meshhosts import (
    NS1,
    RELAY1,
    RELAY2,
    RELAY3,
    eventually,
    main_pid,
    mesh_links_up,
    podman_host,
)
from operator_inventory import OperatorInventory
from test_1_network import dashboard_relays, relays_up_with_links
from testinfra.host import Host

FULL_MESH = {
    "relay1": {"relay2", "relay3"},
    "relay2": {"relay1", "relay3"},
    "relay3": {"relay1", "relay2"},
}


class AddedRelay:
    """What adding relay3 did, measured."""

    def __init__(self) -> None:
        self.inventory = OperatorInventory()
        self.pids_before: dict[str, int] = {}
        self.check_seconds = 0.0
        self.run_seconds = 0.0
        self.check_output = ""
        self.key_after_check = True
        self.seconds_to_links: float | None = None


def monotonic_of_unit_start(host: Host) -> float:
    """When a unit became active, on the clock time.monotonic() reads (one kernel for all)."""
    value = host.check_output(
        "systemctl show --property ActiveEnterTimestampMonotonic --value altmesh-relay.service"
    )
    return int(value) / 1e6


@pytest.fixture(scope="module")
def added() -> AddedRelay:
    added = AddedRelay()
    added.pids_before = {name: main_pid(podman_host(name)) for name in (RELAY1, RELAY2)}
    added.inventory.add_to_group(RELAY3, "relays")
    added.check_seconds, added.check_output = added.inventory.playbook(
        "relays.yml", "--limit", RELAY3, "--check", "--diff"
    )
    relay1, relay2, relay3 = (podman_host(name) for name in (RELAY1, RELAY2, RELAY3))
    added.key_after_check = relay3.file("/etc/altmesh/relay.key").exists
    added.run_seconds, _ = added.inventory.playbook("relays.yml", "--limit", RELAY3)

    def linked() -> bool:
        return "relay3" in mesh_links_up(relay1) and "relay3" in mesh_links_up(relay2)

    if eventually(linked, seconds=90, every=0.5):
        added.seconds_to_links = time.monotonic() - monotonic_of_unit_start(relay3)
    return added


def test_the_check_run_limited_to_relay3_reports_changes_and_makes_none(
    added: AddedRelay,
) -> None:
    recap = re.search(
        rf"{RELAY3}\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", added.check_output
    )
    assert recap and int(recap.group(1)) > 0, added.check_output[-3000:]
    assert not re.search(rf"{RELAY1}\s+: ok=", added.check_output)  # the limit held
    assert not added.key_after_check  # check mode made no key


def test_the_run_limited_to_relay3_starts_it(added: AddedRelay, figures: dict[str, str]) -> None:
    relay3 = podman_host(RELAY3)
    assert relay3.service("altmesh-relay").is_running
    figures["add relay3: --check --diff run, then the run (s)"] = (
        f"{added.check_seconds:.0f}, {added.run_seconds:.0f}"
    )


def test_no_existing_relay_restarted_when_relay3_was_added(added: AddedRelay) -> None:
    now = {name: main_pid(podman_host(name)) for name in (RELAY1, RELAY2)}
    assert now == added.pids_before


def test_every_relay_links_to_relay3_within_60_s(
    added: AddedRelay, figures: dict[str, str]
) -> None:
    assert added.seconds_to_links is not None, "relay1 and relay2 never linked to relay3"
    figures["relay1 and relay2 linked to relay3, after its start (s)"] = (
        f"{added.seconds_to_links:.1f}"
    )
    assert added.seconds_to_links <= 60
    assert eventually(lambda: mesh_links_up(podman_host(RELAY3)) == {"relay1", "relay2"})


def test_the_dashboard_lists_every_relay_up_with_its_mesh_links(added: AddedRelay) -> None:
    ns1 = podman_host(NS1)
    assert eventually(
        lambda: relays_up_with_links(dashboard_relays(ns1), FULL_MESH), seconds=75, every=3
    ), dashboard_relays(ns1)
