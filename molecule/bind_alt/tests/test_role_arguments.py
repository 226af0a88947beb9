"""Every role's documented options are exactly its defaults (pure logic, no host needed).

The argument specs (meta/argument_specs.yml) are what Ansible validates a play's variables with
and what the role READMEs point to; defaults/main.yml is what a role runs with. Both list every
option, with the same default and a type that fits it, for every role of the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def role_names() -> list[str]:
    return sorted(path.parent.parent.name for path in ROLES.glob("*/meta/argument_specs.yml"))


def test_every_role_has_argument_specs_and_defaults() -> None:
    roles = sorted(path.name for path in ROLES.iterdir() if (path / "tasks").is_dir())
    assert role_names() == roles
    for role in roles:
        assert (ROLES / role / "defaults" / "main.yml").is_file(), role


@pytest.mark.parametrize("role", role_names())
def test_the_argument_specs_list_exactly_the_defaults(role: str) -> None:
    specs: dict[str, Any] = yaml.safe_load(
        (ROLES / role / "meta" / "argument_specs.yml").read_text()
    )
    options: dict[str, Any] = specs["argument_specs"]["main"]["options"]
    defaults: dict[str, Any] = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    assert sorted(options) == sorted(defaults)
    for name, option in options.items():
        assert option.get("default") == defaults[name], name
        assert option.get("description"), f"{name} has no description"
        assert isinstance(defaults[name], TYPES[option["type"]]), name
        if option["type"] == "int":
            assert not isinstance(defaults[name], bool), name
        if "choices" in option:
            assert defaults[name] in option["choices"], name


@pytest.mark.parametrize("role", role_names())
def test_every_option_is_namespaced_by_its_role(role: str) -> None:
    defaults: dict[str, Any] = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    assert all(name.startswith(f"{role}_") for name in defaults), sorted(defaults)
