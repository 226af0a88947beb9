"""Runs limited by tags, as an operator makes them on a converged network: `--tags client_config`
on the client and `--tags relay_config` on a relay run the tasks the roles include (the relays'
cards, the network's DNS), render the same config, and change nothing.

Tags on an `include_role` select the include only; without `apply` the included tasks were
skipped and the run failed (`altmesh_common_relays is undefined`).
"""

from __future__ import annotations

import re

import pytest
from meshhosts import RELAY3, USER, main_pid, podman_host
from operator_inventory import OperatorInventory

# a task of altmesh_common's relays.yml, which both roles include
INCLUDED_TASK = "Read the card of every relay of the group from its host"


@pytest.fixture(scope="module")
def inventory() -> OperatorInventory:
    inventory = OperatorInventory()
    inventory.add_to_group(RELAY3, "relays")  # as test_2_added_relay left the network
    return inventory


def recap(output: str, host: str) -> dict[str, int]:
    line = re.search(rf"^{re.escape(host)}\s*:\s*(ok=.*)$", output, re.MULTILINE)
    assert line is not None, output[-3000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


def test_a_client_config_run_runs_the_included_tasks_and_changes_nothing(
    inventory: OperatorInventory,
) -> None:
    _, output = inventory.playbook("clients.yml", "--limit", USER, "--tags", "client_config")
    assert INCLUDED_TASK in output
    assert "Write the node's config" in output
    counts = recap(output, USER)
    assert counts["failed"] == 0 and counts["changed"] == 0, counts


def test_a_relay_config_run_runs_the_included_tasks_and_changes_nothing(
    inventory: OperatorInventory,
) -> None:
    relay3 = podman_host(RELAY3)
    pid = main_pid(relay3)
    _, output = inventory.playbook("relays.yml", "--limit", RELAY3, "--tags", "relay_config")
    assert INCLUDED_TASK in output
    assert "Write the relay's config" in output
    counts = recap(output, RELAY3)
    assert counts["failed"] == 0 and counts["changed"] == 0, counts
    assert main_pid(relay3) == pid
