"""The operator's side of the scenario: a copy of the inventory molecule made, edited as
docs/howto-add-relay.md says, and the operator's playbooks run against it from the controller.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[3]


def molecule_inventory() -> Path:
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if not ephemeral:
        raise AssertionError("MOLECULE_EPHEMERAL_DIRECTORY is not set: run through molecule verify")
    return Path(ephemeral) / "inventory"


class OperatorInventory:
    """A copy of the scenario's inventory in the run's molecule directory, which the tests edit."""

    def __init__(self) -> None:
        source = molecule_inventory()
        self.directory = source.parent / "operator-inventory"
        if self.directory.exists():
            shutil.rmtree(self.directory)
        shutil.copytree(source, self.directory, symlinks=True)
        self.hosts_file = self.directory / "ansible_inventory.yml"

    def _load(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.hosts_file.read_text())
        return data

    def add_to_group(self, host: str, group: str) -> None:
        """Put a host of the inventory into a group (molecule writes groups at the top level)."""
        data = self._load()
        group_data = data.setdefault(group, {})
        hosts = group_data.get("hosts") or {}
        hosts[host] = dict(data["all"]["hosts"][host])
        group_data["hosts"] = hosts
        self.hosts_file.write_text(yaml.safe_dump(data, sort_keys=False))

    def set_host_var(self, host: str, name: str, value: Any) -> None:
        path = self.directory / "host_vars" / host
        current: dict[str, Any] = yaml.safe_load(path.read_text()) if path.exists() else {}
        current = current or {}
        current[name] = value
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(current, sort_keys=False))

    def playbook(self, playbook: str, *args: str) -> tuple[float, str]:
        """Run a playbook of playbooks/ as the operator does; its wall time and output."""
        command = [
            "ansible-playbook",
            "-i",
            str(self.directory),
            str(REPOSITORY / "playbooks" / playbook),
            *args,
        ]
        environment = dict(os.environ)
        environment.setdefault("ANSIBLE_CONFIG", str(REPOSITORY / "ansible.cfg"))
        environment.setdefault("ANSIBLE_ROLES_PATH", str(REPOSITORY / "roles"))
        environment.setdefault(
            "ANSIBLE_LOCAL_TEMP",
            f"/dev/shm/altmesh-ansible-{os.environ.get('ALTMESH_RUN_ID', 'local')}",
        )
        started = time.monotonic()
        done = subprocess.run(
            command, capture_output=True, text=True, env=environment, timeout=1200, check=False
        )
        took = time.monotonic() - started
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{output[-6000:]}")
        return took, output
