"""SOCKS5 (RFC 1928) parsing: no-auth method, CONNECT command, IPv4/IPv6/domain addresses.

Pure functions over bytes so they are tested without sockets. Each parser returns None while
the buffer is incomplete, or the parsed value and the number of bytes consumed.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

VERSION = 5
METHOD_NO_AUTH = 0x00
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04

REP_SUCCEEDED = 0x00
REP_GENERAL_FAILURE = 0x01
REP_NOT_ALLOWED = 0x02
REP_NETWORK_UNREACHABLE = 0x03
REP_HOST_UNREACHABLE = 0x04
REP_CONNECTION_REFUSED = 0x05
REP_TTL_EXPIRED = 0x06
REP_COMMAND_NOT_SUPPORTED = 0x07
REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class NegotiationGate:
    """At most `limit` SOCKS negotiations (greeting and request, before the reply) at once.

    A connection that finds every slot taken is closed at once; refusals are counted so the node
    can say how many it turned away without one log line per connection.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.refused = 0  # since the last report

    def enter(self) -> bool:
        if self.active >= self.limit:
            self.refused += 1
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1

    def take_refused(self) -> int:
        refused, self.refused = self.refused, 0
        return refused


class SocksError(Exception):
    """A request we refuse; `reply` is the RFC 1928 REP code to send before closing."""

    def __init__(self, reply: int, message: str) -> None:
        self.reply = reply
        super().__init__(message)


@dataclass(frozen=True)
class ConnectRequest:
    host: str  # domain name (lower case, no trailing dot) or IP address text
    port: int
    address_type: int

    @property
    def is_domain(self) -> bool:
        return self.address_type == ATYP_DOMAIN


def parse_greeting(buffer: bytes) -> tuple[bytes, int] | None:
    """Client greeting: VER NMETHODS METHODS... -> (methods, consumed)."""
    if len(buffer) < 2:
        return None
    if buffer[0] != VERSION:
        raise SocksError(REP_GENERAL_FAILURE, f"not SOCKS5 (version byte {buffer[0]})")
    count = buffer[1]
    if count == 0:
        raise SocksError(REP_GENERAL_FAILURE, "greeting offers no authentication method")
    if len(buffer) < 2 + count:
        return None
    return bytes(buffer[2 : 2 + count]), 2 + count


def choose_method(methods: bytes) -> int:
    return METHOD_NO_AUTH if METHOD_NO_AUTH in methods else METHOD_NONE_ACCEPTABLE


def method_reply(method: int) -> bytes:
    return bytes((VERSION, method))


def parse_request(buffer: bytes) -> tuple[ConnectRequest, int] | None:
    """Request: VER CMD RSV ATYP DST.ADDR DST.PORT -> (request, consumed)."""
    if len(buffer) < 5:
        return None
    version, command, _reserved, address_type = buffer[0], buffer[1], buffer[2], buffer[3]
    if version != VERSION:
        raise SocksError(REP_GENERAL_FAILURE, f"request is not SOCKS5 (version {version})")
    if address_type == ATYP_IPV4:
        end = 4 + 4
    elif address_type == ATYP_IPV6:
        end = 4 + 16
    elif address_type == ATYP_DOMAIN:
        end = 5 + buffer[4]
    else:
        raise SocksError(REP_ADDRESS_TYPE_NOT_SUPPORTED, f"address type {address_type} unknown")
    if len(buffer) < end + 2:
        return None
    # The command is checked after the address is complete, so the error reply is well-timed.
    if command != CMD_CONNECT:
        raise SocksError(REP_COMMAND_NOT_SUPPORTED, f"command {command} is not CONNECT")
    if address_type == ATYP_IPV4:
        host = str(ipaddress.IPv4Address(bytes(buffer[4:8])))
    elif address_type == ATYP_IPV6:
        host = str(ipaddress.IPv6Address(bytes(buffer[4:20])))
    else:
        raw = bytes(buffer[5:end])
        if not raw:
            raise SocksError(REP_GENERAL_FAILURE, "empty domain name")
        try:
            host = raw.decode("ascii").rstrip(".").lower()
        except UnicodeDecodeError:
            raise SocksError(REP_GENERAL_FAILURE, "domain name is not ASCII") from None
    (port,) = struct.unpack("!H", buffer[end : end + 2])
    if port == 0:
        raise SocksError(REP_GENERAL_FAILURE, "port 0")
    return ConnectRequest(host, port, address_type), end + 2


def reply(
    code: int, bound: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None, port: int = 0
) -> bytes:
    """Server reply: VER REP RSV ATYP BND.ADDR BND.PORT."""
    if bound is None:
        bound = ipaddress.IPv4Address(0)
    atyp = ATYP_IPV4 if bound.version == 4 else ATYP_IPV6
    return bytes((VERSION, code, 0, atyp)) + bound.packed + struct.pack("!H", port)
