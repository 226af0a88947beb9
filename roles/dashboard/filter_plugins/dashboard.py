"""Filters of the dashboard role."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any


def dashboard_is_private_address(host: str) -> bool:
    """Whether plain HTTP may listen on `host`: a loopback, RFC 1918 or ULA address (never a
    wildcard, never a public address, never a name)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if address.is_unspecified:
        return False
    if address.is_loopback:
        return True
    if isinstance(address, ipaddress.IPv4Address):
        return any(
            address in ipaddress.ip_network(net)
            for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
        )
    return address in ipaddress.ip_network("fc00::/7")


def dashboard_tsig_key(text: str) -> dict[str, str]:
    """name, algorithm and secret of a BIND `key` statement (tsig-keygen's output)."""
    match = re.search(
        r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{[^}]*?algorithm\s+"?(?P<algorithm>[\w-]+)"?\s*;'
        r'[^}]*?secret\s+"(?P<secret>[^"]+)"\s*;',
        text,
        re.S,
    )
    if match is None:
        raise ValueError("no key { algorithm ...; secret ...; } statement in the key file")
    return {"name": match["name"], "algorithm": match["algorithm"], "secret": match["secret"]}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "dashboard_is_private_address": dashboard_is_private_address,
            "dashboard_tsig_key": dashboard_tsig_key,
        }
