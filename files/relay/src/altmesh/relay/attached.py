"""Which node is attached through which link: the address a node proved in its handshake (a
hash of its static key) maps to the link it holds to this relay. Streams to that address go down
that link."""

from __future__ import annotations

import ipaddress
import logging

from altmesh.keyfile import encode_public_key
from altmesh.relay.link_state import RelayLink

log = logging.getLogger("altmesh.relay")


class AttachedNodes:
    """Address -> link of every node attached here; a newer link of a node replaces its older."""

    def __init__(self) -> None:
        self._links: dict[ipaddress.IPv6Address, RelayLink] = {}

    def attach(self, link: RelayLink, remote_static: bytes, address: ipaddress.IPv6Address) -> bool:
        """The link's handshake completed; False if it was attached already (a link attaches
        once: rekeys are internal to the core)."""
        if link.app.attached:
            return False
        link.app.attached = True
        previous = self._links.get(address)
        self._links[address] = link
        log.info(
            "link from %s: key %s address %s%s",
            link.peername,
            encode_public_key(remote_static),
            address,
            " (replaces an older link)" if previous is not None else "",
        )
        return True

    def detach(self, link: RelayLink) -> None:
        """The link is gone; its address is free unless a newer link holds it."""
        address = link.conn.remote_address
        if address is not None and self._links.get(address) is link:
            del self._links[address]

    def link_for(self, address: ipaddress.IPv6Address) -> RelayLink | None:
        return self._links.get(address)

    def addresses(self) -> list[ipaddress.IPv6Address]:
        """Every address attached here (the destinations this relay announces to the mesh)."""
        return list(self._links)

    def __len__(self) -> int:
        return len(self._links)
