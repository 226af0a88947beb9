"""Parsers of single values (addresses, ports, names, keys), shared by the config file and the CLI.

Each raises `ConfigError(field, problem)` naming the field it was given; the file's name is added
by whoever reads the file. Messages say what was expected, never what Python said.
"""

from __future__ import annotations

import ipaddress
import re

from altmesh.config.errors import ConfigError
from altmesh.config.model import Forward, HostPort
from altmesh.dnsrecords import RELAY_NAME_PATTERN
from altmesh.protocol.constants import LINK_PROLOGUE_LABEL, MAX_NETWORK_NAME_LEN
from altmesh.protocol.handshake import prologue

DEFAULT_RELAY_PORT = 7400
MAX_HOST_NAME_LEN = 253
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_RELAY_NAME = re.compile(RELAY_NAME_PATTERN)


def parse_port(value: object, field_name: str, allow_zero: bool = False) -> int:
    if isinstance(value, str):
        if not value.isdigit():
            raise ConfigError(field_name, f"port {value!r} is not a number")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(field_name, "port must be an integer")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise ConfigError(field_name, f"port {value} is outside {low}..65535")
    return value


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` spells, or None when it is not an IP address literal."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_host(host: str, field_name: str, text: str) -> None:
    """`host` must be an IP address or a DNS host name (RFC 1123 labels)."""
    if ip_address(host) is not None:
        return
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    where = f"{text!r}: " if text != host else ""
    if len(name) > MAX_HOST_NAME_LEN or not all(_HOST_LABEL.match(label) for label in labels):
        raise ConfigError(field_name, f"{where}{host!r} is not an IP address or host name")
    if labels[-1].isdigit():
        # 999.1.1.1 looks like an IPv4 address and is not one; no real host name ends in digits.
        raise ConfigError(
            field_name, f"{where}{host!r} is not an IP address (IPv4: four numbers 0-255)"
        )


def parse_host_port(text: object, field_name: str, default_port: int | None = None) -> HostPort:
    """`host:port`, `[v6]:port`; a bare host takes `default_port` when one is given."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field_name, "must be a non-empty string like 'HOST:PORT'")
    text = text.strip()
    host: str
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(field_name, f"{text!r}: '[' without closing ']'")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(field_name, f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
        if not isinstance(ip_address(host), ipaddress.IPv6Address):
            raise ConfigError(field_name, f"{text!r}: {host!r} is not an IPv6 address")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise ConfigError(field_name, f"{text!r}: write IPv6 addresses as '[ADDRESS]:PORT'")
    else:
        host, port_text = text, None
    if not host:
        raise ConfigError(field_name, f"{text!r}: host is empty")
    check_host(host, field_name, text)
    if port_text is None:
        if default_port is None:
            raise ConfigError(field_name, f"{text!r}: port is missing (write 'HOST:PORT')")
        return HostPort(host, default_port)
    return HostPort(host, parse_port(port_text, field_name))


def parse_listen(text: object, field_name: str, default_port: int | None = None) -> HostPort:
    """An address to listen on: an IP address of this host (or `localhost`) and a port."""
    address = parse_host_port(text, field_name, default_port)
    if address.host != "localhost" and ip_address(address.host) is None:
        raise ConfigError(
            field_name,
            f"{address.host!r} is a host name; listen on an IP address of this host "
            "(0.0.0.0 or [::] for all of them)",
        )
    return address


def is_wildcard(host: str) -> bool:
    """Whether listening on `host` means every address of the host (0.0.0.0, ::)."""
    address = ip_address(host)
    return address is not None and address.is_unspecified


def same_socket(a: HostPort, b: HostPort) -> bool:
    """Whether two listen addresses would compete for one port."""
    return a.port == b.port and (a.host == b.host or is_wildcard(a.host) or is_wildcard(b.host))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    address = ip_address(host)
    return address is not None and address.is_loopback


def parse_socks_listen(text: object, field_name: str) -> HostPort | None:
    """The SOCKS5 listen address (a loopback address), or None for `"off"`."""
    if text == "off":
        return None
    address = parse_listen(text, field_name)
    if not is_loopback(address.host):
        # An open SOCKS proxy would let anyone on the network use this node's identity.
        raise ConfigError(field_name, f"{address.host!r} is not a loopback address")
    return address


def parse_status_page(text: object, field_name: str) -> HostPort | None:
    """The status page's listen address (a loopback address), or None for `"off"`."""
    if text == "off":
        return None
    address = parse_listen(text, field_name)
    if not is_loopback(address.host):
        # The page shows this node's relays, streams and security events.
        raise ConfigError(field_name, f"{address.host!r} is not a loopback address")
    if address.port == 0:
        raise ConfigError(field_name, "needs a fixed port (the browser must find the page)")
    return address


def parse_forward(text: object, field_name: str) -> Forward:
    """`LOCAL_PORT:NAME:PORT`, e.g. `8080:web.alt:80`."""
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 3:
        raise ConfigError(field_name, f"{text!r} must look like 'LOCAL_PORT:NAME:PORT'")
    local, name, port = parts
    return Forward(
        parse_port(local, field_name),
        parse_alt_name(name, field_name),
        parse_port(port, field_name),
    )


def parse_alt_name(name: object, field_name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(field_name, "must be a name ending in .alt, like 'web.alt'")
    bare = name.rstrip(".").lower()
    labels = bare.split(".")
    if len(labels) < 2 or labels[-1] != "alt":
        raise ConfigError(field_name, f"{name!r} is not a .alt name (like 'web.alt')")
    for label in labels:
        if not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label):
            raise ConfigError(field_name, f"{name!r}: label {label!r} is not a valid DNS label")
    return bare


def parse_public_key(value: object, field_name: str) -> str:
    from altmesh.keyfile import decode_public_key

    if not isinstance(value, str):
        raise ConfigError(field_name, "must be a base64 public key string")
    try:
        decode_public_key(value)
    except ValueError as err:
        raise ConfigError(field_name, str(err)) from None
    return value.strip()


def parse_network_name(value: object, field_name: str) -> str:
    """The network's name, by the protocol's own rule (it is part of every handshake's prologue)."""
    if not isinstance(value, str):
        raise ConfigError(field_name, "must be a string")
    try:
        prologue(LINK_PROLOGUE_LABEL, value)  # the protocol core's rule: 1..255 bytes of UTF-8
    except ValueError:
        size = len(value.encode("utf-8"))
        raise ConfigError(
            field_name,
            f"is {size} bytes of UTF-8; the protocol allows 1 to {MAX_NETWORK_NAME_LEN}",
        ) from None
    if not value.isprintable():
        raise ConfigError(field_name, "must be printable (no control characters)")
    return value


def parse_relay_name(value: object, field_name: str) -> str:
    """A relay's name: one DNS label of lower-case letters, digits and '-' (1-63)."""
    if not isinstance(value, str) or not _RELAY_NAME.match(value):
        shown = repr(value) if isinstance(value, str) else "it"
        raise ConfigError(
            field_name,
            f"{shown} must be one DNS label of 1-63 lower-case letters, digits and '-' "
            "(not starting or ending with '-'), like 'relay1'",
        )
    return value
