"""One TCP link driven by a sans-IO `LinkConnection`: socket bytes in, events out, timers.

The hot path is `BufferedProtocol`: the loop reads straight into a preallocated buffer, the core
decrypts, and writes are coalesced per loop iteration (`kick()`), so many records leave in one
`send()`. Timers come only from `next_timer_deadline()`; there is no polling.

Backpressure: while the transport's write buffer is above its high-water mark (asyncio's
`pause_writing`, at WRITE_HIGH_WATER), the socket is not read either. Everything we send in
answer to the peer (PONG, WINDOW, rekey replies, the applications' answers) then waits until the
peer reads, so a peer that sends and never reads cannot grow our write buffer without bound.

Two nodes that both write more than the other reads would then wait on each other for ever.
Hence the high-water mark is far above asyncio's default (64 KiB): honest traffic is bounded by
the peer's flow-control credit and seldom buffers that much, and the applications add no stream
data to a link while `write_paused` (they resume on `LinkHandler.link_writable`), so the credit a
peer grants cannot make us buffer more either. And while paused, one read is let
in every READ_PROBE_INTERVAL seconds (each probe drains the peer a little), as long as the write
buffer is below READ_PROBE_MAX_BUFFER: a peer that never reads makes us hold at most that much
plus the answers to one read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import monotonic
from typing import Any, Protocol, cast

from altmesh.protocol import LinkConnection, ProtocolError

log = logging.getLogger(__name__)

READ_BUFFER_SIZE = 256 * 1024
# While reading is paused for write backpressure, let one read in this often (see above).
READ_PROBE_INTERVAL = 1.0
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024
READ_PROBE_MAX_BUFFER = 2 * WRITE_HIGH_WATER


class LinkHandler(Protocol):
    """What an application does with a link's life and events."""

    def link_event(self, link: LinkTransport, event: object) -> None: ...

    def link_failed(self, link: LinkTransport, error: ProtocolError) -> None: ...

    def link_lost(self, link: LinkTransport, reason: str) -> None: ...

    def link_writable(self, link: LinkTransport) -> None:
        """The write buffer drained below its low-water mark: stream data held back while
        `link.write_paused` may flow again."""


class LinkTransport(asyncio.BufferedProtocol):
    """asyncio protocol for one link; `conn` is the protocol core object."""

    def __init__(
        self,
        conn: LinkConnection,
        handler: LinkHandler,
        *,
        is_initiator: bool,
        on_connection_made: Callable[[LinkTransport], bool] | None = None,
    ) -> None:
        self.conn = conn
        self.handler = handler
        self.is_initiator = is_initiator
        self.on_connection_made = on_connection_made
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peername: str = "?"
        self.closed = False
        self.write_paused = False
        self.app: dict[str, Any] = {}  # application state hung on the link
        self._buffer = bytearray(READ_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._lost_reported = False
        self._reading_paused = False
        self._probe: asyncio.TimerHandle | None = None
        self.established_waiter: asyncio.Future[None] = self.loop.create_future()

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            host, port = peer[0], peer[1]
            self.peername = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.on_connection_made is not None and not self.on_connection_made(self):
            self.closed = True
            self.transport.abort()
            return
        self.conn.start(monotonic())
        self._after_input()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        if self.write_paused and not self._reading_paused:  # a probe read: pause again
            self._pause_reading()
        try:
            self.conn.receive_data(bytes(self._view[:nbytes]), monotonic())
        except ProtocolError as error:
            self._fail(error)
            return
        self._after_input()

    def eof_received(self) -> bool:
        self._lost("peer closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._cancel_probe()
        self._lost(f"connection lost: {exc}" if exc else "connection closed")

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._cancel_probe()
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        if not self.closed:
            self.handler.link_writable(self)

    def _pause_reading(self) -> None:
        transport = self.transport
        if self._reading_paused or transport is None or transport.is_closing():
            return
        transport.pause_reading()
        self._reading_paused = True
        self._cancel_probe()
        self._probe = self.loop.call_later(READ_PROBE_INTERVAL, self._probe_read)

    def _probe_read(self) -> None:
        """Still paused after READ_PROBE_INTERVAL: let one read in (buffer_updated pauses again)."""
        self._probe = None
        if self.closed or not self._reading_paused or self.transport is None:
            return
        if self.transport.get_write_buffer_size() >= READ_PROBE_MAX_BUFFER:
            self._probe = self.loop.call_later(READ_PROBE_INTERVAL, self._probe_read)
            return
        self._reading_paused = False
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _cancel_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    # ------------------------------------------------------------------ driving the core

    def _after_input(self) -> None:
        """Hand every pending event to the application, then write and re-arm the timer."""
        conn = self.conn
        try:
            while True:
                event = conn.next_event()
                if event is None:
                    break
                if not self.established_waiter.done() and conn.established:
                    self.established_waiter.set_result(None)
                self.handler.link_event(self, event)
                if self.closed:
                    return
        except ProtocolError as error:
            self._fail(error)
            return
        if not self.established_waiter.done() and conn.established:
            self.established_waiter.set_result(None)
        self.flush()

    def kick(self) -> None:
        """The application changed the core's state: write (coalesced) at the next iteration."""
        if not self._flush_scheduled and not self.closed:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if not self.closed:
            self._after_input()

    def flush(self) -> None:
        if self.closed or self.transport is None:
            return
        data = self.conn.data_to_send(monotonic())
        if data:
            self.transport.write(data)
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.conn.next_timer_deadline()
        if deadline == self._timer_deadline:
            return
        self._cancel_timer()
        self._timer_deadline = deadline
        if deadline is not None:
            # The core runs on time.monotonic() (uvloop's loop.time() has only millisecond
            # resolution, too coarse for RTTs); both count from the same monotonic clock.
            self._timer = self.loop.call_later(max(0.0, deadline - monotonic()), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        if self.closed:
            return
        try:
            self.conn.handle_timer(monotonic())
        except ProtocolError as error:
            self._fail(error)
            return
        self._after_input()

    # ------------------------------------------------------------------ ending

    def _fail(self, error: ProtocolError) -> None:
        if self.closed:
            return
        self.handler.link_failed(self, error)
        self.abort(f"protocol error: {error.kind}")

    def close(self, reason: str) -> None:
        """Close cleanly: tell the peer, write what is queued, then close the socket."""
        if self.closed:
            return
        try:
            self.conn.close(reason)
            self.flush()
        except ProtocolError:
            pass
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()
        self._lost(reason)

    def abort(self, reason: str) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        if self._lost_reported:
            return
        self._lost_reported = True
        self.closed = True
        self._cancel_timer()
        self._cancel_probe()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if not self.established_waiter.done():
            self.established_waiter.set_exception(ConnectionError(reason))
            self.established_waiter.exception()  # mark retrieved: nobody may be waiting
        self.handler.link_lost(self, reason)
