"""TAI64N timestamps (12 bytes): handshake replay protection, as in WireGuard.

8 bytes big-endian 2^62 + 10 + Unix seconds (TAI is 10 s ahead of the UTC epoch count, as libtai
and WireGuard use), then 4 bytes big-endian nanoseconds. Byte order equals time order, so
timestamps compare as bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from altmesh.protocol.constants import TAI64_BASE, TAI64N_LEN
from altmesh.protocol.errors import InvalidArgument

_TAI64N = struct.Struct(">QI")


def tai64n(wall_time: float) -> bytes:
    """The TAI64N label of a Unix time in seconds."""
    nanoseconds_total = round(wall_time * 1_000_000_000)
    seconds, nanoseconds = divmod(nanoseconds_total, 1_000_000_000)
    return _TAI64N.pack(TAI64_BASE + seconds, nanoseconds)


def parse_tai64n(label: bytes) -> float:
    """The Unix time of a TAI64N label; InvalidArgument if it is not one."""
    if len(label) != TAI64N_LEN:
        raise InvalidArgument(f"a TAI64N timestamp is {TAI64N_LEN} bytes, got {len(label)}")
    seconds: int
    nanoseconds: int
    seconds, nanoseconds = _TAI64N.unpack(label)
    if nanoseconds >= 1_000_000_000 or seconds < TAI64_BASE - (1 << 61):
        raise InvalidArgument("malformed TAI64N timestamp")
    return float(seconds - TAI64_BASE) + nanoseconds / 1e9


class TimestampIssuer:
    """The TAI64N labels one node puts in the handshakes it starts: its wall clock's time, made
    strictly increasing.

    A responder refuses a timestamp that is not newer than the last one it accepted from the
    same key, so two handshakes started in the same clock tick (many streams opened at once, each
    with its own end-to-end session), or after the clock stepped back, must still carry
    increasing labels. The node creates one issuer and passes it to every link and end-to-end
    session it starts; `wallclock` returns Unix seconds (for example `time.time`).
    """

    __slots__ = ("_last", "_wallclock")

    def __init__(self, wallclock: Callable[[], float]) -> None:
        self._wallclock = wallclock
        self._last = b""

    def next(self) -> bytes:
        """A label of the wall clock now, strictly greater than any this issuer gave before."""
        label = tai64n(self._wallclock())
        if label <= self._last:
            seconds, nanoseconds = _TAI64N.unpack(self._last)
            nanoseconds += 1
            if nanoseconds >= 1_000_000_000:
                seconds, nanoseconds = seconds + 1, 0
            label = _TAI64N.pack(seconds, nanoseconds)
        self._last = label
        return label
