"""TAI64N timestamps (12 bytes): handshake replay protection, as in WireGuard.

8 bytes big-endian 2^62 + 10 + Unix seconds (TAI is 10 s ahead of the UTC epoch count, as libtai
and WireGuard use), then 4 bytes big-endian nanoseconds. Byte order equals time order, so
timestamps compare as bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from altmesh.protocol.constants import TAI64_BASE, TAI64N_LEN
from altmesh.protocol.errors import HandshakeError

_TAI64N = struct.Struct(">QI")


def tai64n(wall_time: float) -> bytes:
    """The TAI64N label of a Unix time in seconds."""
    nanoseconds_total = round(wall_time * 1_000_000_000)
    seconds, nanoseconds = divmod(nanoseconds_total, 1_000_000_000)
    return _TAI64N.pack(TAI64_BASE + seconds, nanoseconds)


def parse_tai64n(label: bytes) -> float:
    """The Unix time of a TAI64N label; HandshakeError if it is not one."""
    if len(label) != TAI64N_LEN:
        raise HandshakeError(f"a TAI64N timestamp is {TAI64N_LEN} bytes, got {len(label)}")
    seconds: int
    nanoseconds: int
    seconds, nanoseconds = _TAI64N.unpack(label)
    if nanoseconds >= 1_000_000_000 or seconds < TAI64_BASE - (1 << 61):
        raise HandshakeError("malformed TAI64N timestamp")
    return float(seconds - TAI64_BASE) + nanoseconds / 1e9


class _IssuedTimestamps:
    """The last label this process put in a handshake.

    Process-wide on purpose: two handshakes started in the same clock tick (many streams opened at
    once, each with its own end-to-end session) must still carry different, increasing
    timestamps, or the responder would refuse the second as a replay.
    """

    last = b""


def next_timestamp(wallclock: Callable[[], float]) -> bytes:
    """A TAI64N label of the wall clock, strictly greater than any this process issued before."""
    label = tai64n(wallclock())
    if label <= _IssuedTimestamps.last:
        seconds, nanoseconds = _TAI64N.unpack(_IssuedTimestamps.last)
        nanoseconds += 1
        if nanoseconds >= 1_000_000_000:
            seconds, nanoseconds = seconds + 1, 0
        label = _TAI64N.pack(seconds, nanoseconds)
    _IssuedTimestamps.last = label
    return label
