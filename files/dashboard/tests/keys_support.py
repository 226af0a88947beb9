"""Keys and the overlay addresses they name, for test bodies (the dashboard checks that a
registration's address is node_address(prefix, key), so tests must send matching pairs)."""

from __future__ import annotations

import base64
import secrets

from altmesh.protocol.address import network_prefix, node_address

TEST_PREFIX = "fd00:1:2::/48"


def address_of(public_key: str, prefix: str = TEST_PREFIX) -> str:
    """The overlay address of a base64 key in `prefix`."""
    return str(node_address(network_prefix(prefix), base64.b64decode(public_key)))


def new_key() -> str:
    """A random base64 32-byte key (any 32 bytes do as a public key for the dashboard)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()
