"""Free loopback ports for test servers that bind their own sockets.

A port taken from the kernel with `bind(("127.0.0.1", 0))` comes from the ephemeral range
(`net.ipv4.ip_local_port_range`, 32768-60999 by default). Between the moment a test closes that
socket and the moment its server binds the port, any outgoing connection on the machine may be
given the same port as its local port -- and a mesh of relays dialling each other makes many.
CI lost a run to exactly that ("[Errno 98] address already in use" on a port chosen this way).

So ports are drawn at random from *below* the ephemeral range, where the kernel never assigns
local ports on its own, checked bindable (TCP, and UDP when asked), and never handed out twice by
one process.
"""

from __future__ import annotations

import errno
import random
import socket
import threading
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Below 10000 live many well-known services; above the ephemeral range's start the kernel picks.
_LOWEST = 10000
_DEFAULT_EPHEMERAL_START = 32768
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_lock = threading.Lock()
_handed_out: set[int] = set()
_random = random.SystemRandom()


class NoFreePortError(RuntimeError):
    """No bindable port was found below the ephemeral range."""


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        first = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_START
    return first


def port_is_free(port: int, *, udp: bool = False, host: str = LOOPBACK) -> bool:
    """Whether `port` can be bound on `host` now (no SO_REUSEADDR: a held port must fail)."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(*, udp_too: bool = False, avoid: frozenset[int] = frozenset()) -> int:
    """A loopback port below the ephemeral range, free for TCP (and UDP when `udp_too`), that
    this process has not handed out before and that is not in `avoid`."""
    high = ephemeral_start() - 1
    if high <= _LOWEST:
        raise NoFreePortError(
            f"the ephemeral port range starts at {high + 1}: no room below it for test ports"
        )
    with _lock:
        for _ in range(500):
            port = _random.randint(_LOWEST, high)
            if port in _handed_out or port in avoid:
                continue
            if not port_is_free(port):
                continue
            if udp_too and not port_is_free(port, udp=True):
                continue
            _handed_out.add(port)
            return port
    raise NoFreePortError(f"no free loopback port in {_LOWEST}-{high} after 500 tries")
