"""LinkConfig (the settings of a link) and LinkStats (its counters)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from altmesh.protocol import constants as C
from altmesh.protocol.errors import InvalidArgument
from altmesh.protocol.handshake import prologue
from altmesh.protocol.limits import ControlLimits


@dataclass
class LinkConfig:
    """Settings of a link; both ends of a link must use the same `network` and `prefix`."""

    network: str
    prefix: ipaddress.IPv6Network
    rekey_after_time: float = C.REKEY_AFTER_TIME
    rekey_after_messages: int = C.REKEY_AFTER_MESSAGES
    reject_after_time: float = C.REJECT_AFTER_TIME
    reject_after_messages: int = C.REJECT_AFTER_MESSAGES
    keepalive_interval: float = C.KEEPALIVE_INTERVAL
    # Nothing received for this long kills the link (None: 4 * keepalive_interval).
    idle_timeout: float | None = None
    handshake_timeout: float = C.HANDSHAKE_TIMEOUT
    # Bound on the received-but-unacknowledged bytes one link may make us hold: the number of
    # streams the peer may open is capped so that all streams' windows fit in it.
    link_window: int = C.DEFAULT_LINK_WINDOW
    # Receive window per stream (credit given to the peer for each stream).
    stream_window: int = C.DEFAULT_STREAM_WINDOW
    # Streams the peer may hold open at once on this link.
    max_streams: int = C.DEFAULT_MAX_STREAMS
    # How many records of each control kind the peer may send (protocol/limits.py).
    control_limits: ControlLimits = field(default_factory=ControlLimits)

    def __post_init__(self) -> None:
        prologue(C.LINK_PROLOGUE_LABEL, self.network)  # validates the name
        if self.prefix.prefixlen != C.ADDRESS_PREFIX_LEN:
            raise InvalidArgument(f"prefix must be a /48, not a /{self.prefix.prefixlen}")
        if not 0 < self.rekey_after_time < self.reject_after_time:
            raise InvalidArgument("need 0 < rekey_after_time < reject_after_time")
        if not 0 < self.rekey_after_messages < self.reject_after_messages:
            raise InvalidArgument("need 0 < rekey_after_messages < reject_after_messages")
        if self.reject_after_messages > C.MAX_NONCE:
            raise InvalidArgument(f"reject_after_messages must be at most {C.MAX_NONCE}")
        if self.keepalive_interval <= 0:
            raise InvalidArgument("keepalive_interval must be positive")
        if self.idle_timeout is not None and self.idle_timeout <= self.keepalive_interval:
            raise InvalidArgument("idle_timeout must be longer than keepalive_interval")
        if self.handshake_timeout <= 0:
            raise InvalidArgument("handshake_timeout must be positive")
        if not 1 <= self.stream_window <= C.MAX_STREAM_WINDOW:
            raise InvalidArgument(f"stream_window must be 1..{C.MAX_STREAM_WINDOW}")
        if not 1 <= self.max_streams <= C.MAX_STREAMS_LIMIT:
            raise InvalidArgument(f"max_streams must be 1..{C.MAX_STREAMS_LIMIT}")
        if self.link_window < 2 * self.stream_window:
            raise InvalidArgument("link_window must hold at least two stream windows")

    @property
    def effective_idle_timeout(self) -> float:
        """Nothing heard from the peer for this long kills the link (default 4 keepalives)."""
        if self.idle_timeout is not None:
            return self.idle_timeout
        return 4 * self.keepalive_interval

    @property
    def advertised_max_streams(self) -> int:
        """Streams the peer may hold open: at most max_streams, and few enough that the windows
        of all streams (the peer's and ours, each up to max) fit in link_window."""
        return max(1, min(self.max_streams, self.link_window // (2 * self.stream_window)))


@dataclass
class LinkStats:
    """Counters of one link (plain numbers, for status and metrics)."""

    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    handshakes: int = 0
    rekeys: int = 0
    streams_open: int = 0
    streams_total: int = 0
    records_in: int = 0  # records received (the work a peer made us do, with messages_in)
    last_rtt: float | None = None
    key_epoch: int = 0
