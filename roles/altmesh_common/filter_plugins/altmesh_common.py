"""Filters the altmesh roles use to read other hosts of the inventory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def altmesh_common_address_of(host: str, hostvars: Mapping[str, Any]) -> str:
    """A DNS server's address as the bind_alt role uses it: bind_alt_address, else its first IPv4
    address from facts, else '' (facts not gathered)."""
    variables = hostvars[host]
    explicit = variables.get("bind_alt_address", "")
    if explicit:
        return str(explicit)
    facts = variables.get("ansible_facts", {})
    addresses = list(facts.get("all_ipv4_addresses") or [])
    return str(addresses[0]) if addresses else ""


def altmesh_common_hosts_without_address(
    hosts: Iterable[str], hostvars: Mapping[str, Any]
) -> list[str]:
    """The hosts whose address is not known yet (their facts must be gathered)."""
    return [host for host in hosts if not altmesh_common_address_of(host, hostvars)]


def altmesh_common_ds_text(ds: Mapping[str, Any], zone: str) -> str:
    """A DS of bind_alt_trust_anchor in zone-file form, as node configs take trust anchors."""
    origin = zone if zone.endswith(".") else zone + "."
    return f"{origin} IN DS {ds['key_tag']} {ds['algorithm']} {ds['digest_type']} {ds['digest']}"


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "altmesh_common_address_of": altmesh_common_address_of,
            "altmesh_common_hosts_without_address": altmesh_common_hosts_without_address,
            "altmesh_common_ds_text": altmesh_common_ds_text,
        }
