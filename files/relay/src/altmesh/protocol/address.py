"""Node addresses: the network's RFC 4193 /48, then 80 bits of a hash of the static public key.

An address therefore names a key: a node that claims an address must prove (in the handshake) that
it holds the private key whose public half hashes to it.
"""

from __future__ import annotations

import hashlib
import ipaddress

from altmesh.protocol.constants import ADDRESS_HASH_LABEL, ADDRESS_PREFIX_LEN, KEY_LEN
from altmesh.protocol.errors import InvalidArgument

_ULA = ipaddress.IPv6Network("fd00::/8")


def network_prefix(text: str) -> ipaddress.IPv6Network:
    """Parse and validate a network's prefix: an RFC 4193 locally assigned /48 (inside fd00::/8)."""
    try:
        prefix = ipaddress.IPv6Network(text.strip(), strict=True)
    except ValueError as error:
        raise InvalidArgument(f"prefix {text!r} is not an IPv6 network: {error}") from None
    if prefix.prefixlen != ADDRESS_PREFIX_LEN:
        raise InvalidArgument(f"prefix {text!r} must be a /48, not a /{prefix.prefixlen}")
    if not prefix.subnet_of(_ULA):
        raise InvalidArgument(
            f"prefix {text!r} is not an RFC 4193 ULA prefix (must be inside fd00::/8)"
        )
    return prefix


def address_suffix(public_key: bytes) -> bytes:
    """The 80-bit interface part of a key's address: BLAKE2s-256(label || key)[:10]."""
    if len(public_key) != KEY_LEN:
        raise InvalidArgument(f"a public key is {KEY_LEN} bytes, got {len(public_key)}")
    return hashlib.blake2s(ADDRESS_HASH_LABEL + public_key).digest()[:10]


def node_address(prefix: ipaddress.IPv6Network, public_key: bytes) -> ipaddress.IPv6Address:
    """The address of `public_key` in the network with this /48 prefix."""
    if prefix.prefixlen != ADDRESS_PREFIX_LEN:
        raise InvalidArgument(f"prefix must be a /48, not a /{prefix.prefixlen}")
    return ipaddress.IPv6Address(prefix.network_address.packed[:6] + address_suffix(public_key))


def address_matches(
    address: ipaddress.IPv6Address, prefix: ipaddress.IPv6Network, public_key: bytes
) -> bool:
    """Whether `address` is the address of `public_key` in this network."""
    try:
        return node_address(prefix, public_key) == address
    except InvalidArgument:
        return False
