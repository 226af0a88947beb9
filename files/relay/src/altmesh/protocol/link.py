"""LinkConnection: one secured TCP link as a sans-IO state machine (h11/aioquic style).

Bytes from the socket go in with `receive_data(data, now)`; events come out of `next_event()`;
bytes for the socket come out of `data_to_send()`; timers are driven by `handle_timer(now)` at
`next_timer_deadline()`. No sockets, threads or clocks inside: `now` is monotonic seconds passed
in by the adapter; the wall clock (only for handshake timestamps) is an injected callable.

Fatal peer faults raise a ProtocolError subclass from `receive_data` / `handle_timer`; the link is
then dead (the adapter logs a security event with `err.kind` and closes the socket).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from altmesh.protocol import constants as C
from altmesh.protocol.events import Event
from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.replay import ReplayStore


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
    idle_timeout: float = C.IDLE_TIMEOUT
    handshake_timeout: float = C.HANDSHAKE_TIMEOUT
    # Sender-side bound: send_stream_data accepts nothing while this many encrypted bytes wait in
    # data_to_send() (the socket is slow); bounds our output memory for the link.
    link_window: int = 4 * 1024 * 1024
    # Receive window per stream (credit given to the peer for each stream).
    stream_window: int = C.DEFAULT_STREAM_WINDOW
    # Streams the peer may hold open at once on this link.
    max_streams: int = C.DEFAULT_MAX_STREAMS

    def __post_init__(self) -> None: ...


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
    last_rtt: float | None = None
    key_epoch: int = 0


class LinkConnection:
    """One link: handshake, records, streams, flow control and rekeying."""

    @classmethod
    def initiator(
        cls,
        config: LinkConfig,
        local: StaticKeyPair,
        remote_public: bytes,
        *,
        wallclock: Callable[[], float] = time.time,
    ) -> LinkConnection:
        """The connecting side; it must know the responder's static key."""
        raise NotImplementedError

    @classmethod
    def responder(
        cls,
        config: LinkConfig,
        local_keys: Sequence[StaticKeyPair],
        *,
        authorize: Callable[[bytes], bool],
        replay_store: ReplayStore,
        wallclock: Callable[[], float] = time.time,
    ) -> LinkConnection:
        """The accepting side. `local_keys`: current key first, then the previous during rotation.

        `authorize(remote_static)` decides whether the peer's key may connect (KeyRefused if not).
        """
        raise NotImplementedError

    # ---------------------------------------------------------------- driving
    def start(self, now: float) -> None:
        """Begin: the initiator queues handshake message 1; the responder arms its timeout."""
        raise NotImplementedError

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the socket. Raises ProtocolError on a fatal peer fault."""
        raise NotImplementedError

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        raise NotImplementedError

    def data_to_send(self, now: float | None = None) -> bytes:
        """Everything that must be written to the socket now (drains the output buffer)."""
        raise NotImplementedError

    def handle_timer(self, now: float) -> None:
        """Run due timers (rekey, keepalive, expiry, timeouts). May raise ProtocolError."""
        raise NotImplementedError

    def next_timer_deadline(self) -> float | None:
        """When `handle_timer` must be called next (same clock as `now`), or None."""
        raise NotImplementedError

    # ---------------------------------------------------------------- streams
    def open_stream(self, destination: ipaddress.IPv6Address, port: int) -> int:
        """Open a stream to `destination` (a node address) and `port`; returns its id.

        Raises FlowControlError if the peer's stream limit is reached, LinkClosedError if the link
        is not established.
        """
        raise NotImplementedError

    def send_stream_data(self, stream_id: int, data: bytes) -> int:
        """Queue up to the stream's credit of `data`; returns how many bytes were taken.

        Offer the rest again after StreamWritable for this stream.
        """
        raise NotImplementedError

    def stream_send_capacity(self, stream_id: int) -> int:
        """How many bytes `send_stream_data` would take now (0 for unknown/closed streams)."""
        raise NotImplementedError

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """The app consumed `nbytes` received on the stream: credit goes back to the peer."""
        raise NotImplementedError

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (FIN)."""
        raise NotImplementedError

    def reset_stream(self, stream_id: int, code: int, reason: str) -> None:
        """Abort the stream in both directions; unknown or closed streams are ignored."""
        raise NotImplementedError

    # ---------------------------------------------------------------- control
    def ping(self, now: float) -> None:
        """Send a PING; a PongReceived event follows with the round-trip time."""
        raise NotImplementedError

    def send_route_info(self, payload: bytes) -> None:
        """Send opaque routing information (at most MAX_ROUTE_INFO_LEN bytes)."""
        raise NotImplementedError

    def rekey(self, now: float) -> None:
        """Start a rekey now (normally timers do it); ignored if one is already running."""
        raise NotImplementedError

    def close(self, reason: str) -> None:
        """Tell the peer we close (CLOSE record); the link then accepts nothing more."""
        raise NotImplementedError

    # ---------------------------------------------------------------- state
    @property
    def established(self) -> bool:
        """Whether the handshake completed and the link is not closed."""
        raise NotImplementedError

    @property
    def remote_static(self) -> bytes | None:
        """The peer's proven static public key (None before the handshake)."""
        raise NotImplementedError

    @property
    def remote_address(self) -> ipaddress.IPv6Address | None:
        """The peer's address, derived from its proven key (None before the handshake)."""
        raise NotImplementedError

    @property
    def stats(self) -> LinkStats:
        """Counters of this link."""
        raise NotImplementedError
