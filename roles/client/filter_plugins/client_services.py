"""Which hosts of the inventory are services whose records the client role publishes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def client_published_services(hosts: Iterable[str], hostvars: Mapping[str, Any]) -> list[str]:
    """The hosts the inventory declares as services (client_mode: service) that are published
    (client_dns_publish not false), in inventory order."""
    published = []
    for host in hosts:
        variables = hostvars[host]
        if variables.get("client_mode") == "service" and variables.get("client_dns_publish", True):
            published.append(host)
    return published


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"client_published_services": client_published_services}
