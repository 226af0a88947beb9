"""Helpers for tests of altmesh and altmesh-dashboard that need real servers (not mocks).

`altmesh.testing.named.NamedServer` starts Debian's `named` on a free loopback port with a
DNSSEC-signed zone, TSIG keys and rndc, and stops it by PID.
"""

from altmesh.testing.named import NamedServer, NamedStartError

__all__ = ["NamedServer", "NamedStartError"]
