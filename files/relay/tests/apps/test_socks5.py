"""SOCKS5 (RFC 1928) parsing: greeting, CONNECT with domain / IPv4 / IPv6, refusals."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from altmesh.client import socks5
from hypothesis import given
from hypothesis import strategies as st


def request(atyp: int, address: bytes, port: int, command: int = 1) -> bytes:
    return bytes((5, command, 0, atyp)) + address + struct.pack("!H", port)


def test_greeting_picks_no_auth_and_waits_for_all_methods() -> None:
    assert socks5.parse_greeting(b"\x05\x02\x02") is None
    methods, used = socks5.parse_greeting(b"\x05\x02\x02\x00rest") or (b"", 0)
    assert used == 4
    assert socks5.choose_method(methods) == socks5.METHOD_NO_AUTH
    assert socks5.choose_method(b"\x02") == socks5.METHOD_NONE_ACCEPTABLE


def test_domain_name_request() -> None:
    raw = request(3, b"\x07Web.Alt", 80)
    parsed = socks5.parse_request(raw + b"GET /")
    assert parsed is not None
    connect, used = parsed
    assert (connect.host, connect.port, connect.is_domain) == ("web.alt", 80, True)
    assert used == len(raw)


def test_ipv6_literal_request() -> None:
    address = ipaddress.IPv6Address("fd12:3456:789a::1")
    connect, _ = socks5.parse_request(request(4, address.packed, 443)) or (None, 0)
    assert connect is not None
    assert connect.host == "fd12:3456:789a::1"


def test_ipv4_request() -> None:
    connect, _ = socks5.parse_request(request(1, bytes((10, 0, 0, 1)), 22)) or (None, 0)
    assert connect is not None and connect.host == "10.0.0.1"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (request(3, b"\x07web.alt", 80, command=2), socks5.REP_COMMAND_NOT_SUPPORTED),
        (request(9, b"\x00" * 4, 80), socks5.REP_ADDRESS_TYPE_NOT_SUPPORTED),
        (b"\x04\x01\x00\x01" + b"\x00" * 6, socks5.REP_GENERAL_FAILURE),
        (request(3, b"\x00", 80), socks5.REP_GENERAL_FAILURE),
    ],
)
def test_bad_requests_are_refused_with_their_reply_code(raw: bytes, code: int) -> None:
    with pytest.raises(socks5.SocksError) as info:
        socks5.parse_request(raw)
    assert info.value.reply == code


def test_reply_encodes_bound_address() -> None:
    assert socks5.reply(0) == b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    v6 = socks5.reply(0, ipaddress.IPv6Address("::1"), 1080)
    assert v6[3] == 4 and len(v6) == 22 and v6[-2:] == b"\x04\x38"


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    for parser in (socks5.parse_greeting, socks5.parse_request):
        try:
            result = parser(data)
        except socks5.SocksError:
            continue
        if result is not None:
            assert 0 < result[1] <= len(data)
