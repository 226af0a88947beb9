"""Addresses (with test vectors), key encoding, TAI64N."""

from __future__ import annotations

import ipaddress

import pytest
from altmesh.protocol import (
    StaticKeyPair,
    TimestampIssuer,
    address_matches,
    decode_key,
    encode_key,
    network_prefix,
    node_address,
    parse_tai64n,
    tai64n,
)

from .helpers import fixed_key

PREFIX = network_prefix("fd12:3456:789a::/48")


def test_address_is_the_prefix_then_80_bits_of_blake2s_of_the_key() -> None:
    import hashlib

    key = fixed_key(1).public
    address = node_address(PREFIX, key)
    digest = hashlib.blake2s(b"altmesh-address-v1" + key).digest()
    assert address.packed[:6] == PREFIX.network_address.packed[:6]
    assert address.packed[6:] == digest[:10]
    assert address in PREFIX


def test_address_matches_only_its_own_key_and_network() -> None:
    key, other = fixed_key(1).public, fixed_key(2).public
    address = node_address(PREFIX, key)
    assert address_matches(address, PREFIX, key)
    assert not address_matches(address, PREFIX, other)
    assert not address_matches(address, network_prefix("fd00:1::/48"), key)
    assert not address_matches(address, PREFIX, b"short")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fd12:3456:789a::/64", "/48"),
        ("2001:db8::/48", "fd00::/8"),
        ("fd12:3456:789a::1/48", "not an IPv6 network"),
        ("not-a-prefix", "not an IPv6 network"),
    ],
)
def test_network_prefix_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        network_prefix(text)


def test_keys_encode_as_standard_base64_and_decode_with_clear_errors() -> None:
    pair = StaticKeyPair.generate()
    text = encode_key(pair.public)
    assert len(text) == 44 and decode_key(text) == pair.public
    assert decode_key(" " + text + "\n") == pair.public
    with pytest.raises(ValueError, match="32 bytes"):
        decode_key("AAAA")
    with pytest.raises(ValueError, match="base64"):
        decode_key("not base64!")
    with pytest.raises(ValueError, match="32 bytes"):
        StaticKeyPair.from_private(b"123")


def test_tai64n_round_trips_and_orders_as_bytes() -> None:
    label = tai64n(1_700_000_000.5)
    assert len(label) == 12
    assert label.hex() == "400000006553f10a1dcd6500"
    assert parse_tai64n(label) == 1_700_000_000.5
    assert tai64n(1.0) < tai64n(2.0) < tai64n(2.000000001)


def test_timestamps_in_the_same_clock_tick_still_increase() -> None:
    issuer = TimestampIssuer(lambda: 1_800_000_000.0)
    labels = [issuer.next() for _ in range(5)]
    assert labels == sorted(set(labels))
    assert labels[0] == tai64n(1_800_000_000.0)  # the first is the clock's own time


def test_timestamps_keep_increasing_when_the_wall_clock_steps_back() -> None:
    clock = iter([1_800_000_000.0, 1_799_999_000.0, 1_800_000_000.5])
    issuer = TimestampIssuer(lambda: next(clock))
    first, stepped_back, later = issuer.next(), issuer.next(), issuer.next()
    assert first < stepped_back < later
    assert later == tai64n(1_800_000_000.5)


def test_address_vector_in_ipaddress_form() -> None:
    assert isinstance(node_address(PREFIX, fixed_key(1).public), ipaddress.IPv6Address)
