"""One TCP link driven by a sans-IO `LinkConnection`: socket bytes in, events out, timers.

The application sees the core's events as the typed `Event` union (`LinkHandler.link_event`) and
keeps its per-link state in `link.app`, an object of its own type (`LinkTransport[RelayLinkState]`,
`LinkTransport[ClientLinkState]`) given when the link is made.

The hot path is `BufferedProtocol`: the loop reads straight into a preallocated buffer, the core
decrypts, and writes are coalesced (`kick()`), so many records leave in one `send()`. A link kicked
while another link's input (or a local socket's, `flush_kicked_after`) is being handled is written
right after that input, in the same pass of the loop: a relay forwards a record without waiting
for the loop's next pass (each pass is a further `epoll_wait` and a round of the loop's
bookkeeping on every hop of a path). A kick from anywhere else writes at the next pass.

Timers come only from `next_timer_deadline()`; there is no polling. The deadline moves with every
message sent (the keepalive is due that long after the last one), so a timer that would fire
earlier than the new deadline is kept rather than re-armed per write: it fires, finds nothing
due, and is armed anew at the deadline of that moment. Nor is the deadline recomputed per write:
only when the core's `deadline_version` changed since the timer was armed (a state change, a
key, a rekey starting, ending or falling due), since otherwise it can only have moved later.

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

Memory and work a peer can take (docs/relay-config.md, "Limits"):

- **One read buffer per node.** The loop reads one socket at a time and the core copies what it
  keeps, so every link of a node reads into the same `ReadBuffer` (READ_BUFFER_SIZE) instead of
  one each: an idle connection holds no read buffer at all.
- **Small reads before the handshake.** Until the link is established it is read PRE_AUTH_READ
  bytes at a time (message 1 is 136 bytes framed): a connection that has not authenticated can
  make us hold only its partial handshake frame.
- **A work budget per link.** Each record received is one unit of work (what a relay does per
  record, forwarding it, costs far more than decrypting the message it came in; empty messages
  are limited by the core's record limits). A link may do `work_rate` units per second (bursts
  of `work_burst`); a link over its budget is not read
  until it has earned the deficit back, so one link flooding tiny records cannot take the loop
  from the others. A link whose last read held less than DENSE_BYTES_PER_UNIT bytes per unit is
  read DENSE_READ bytes at a time, which bounds the work one read of it can cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import monotonic
from typing import Generic, Protocol, TypeVar, cast

from altmesh.protocol import Event, LinkConnection, ProtocolError, StoreUnavailable

log = logging.getLogger(__name__)

READ_BUFFER_SIZE = 256 * 1024
PRE_AUTH_READ = 1024
DENSE_READ = 2 * 1024
DENSE_BYTES_PER_UNIT = 1024
# Units of work (records) per second and burst. A record the relay forwards costs it some 20 us;
# a transfer in full DATA records (what the reference client and service send) needs one unit
# per 64 KiB, so this budget still carries 650 MB/s per link, about what one relay process can
# forward at all, while a flood of 1-byte records takes at most ~20% of a core. The burst is
# small: a new link starts with it, and one pass over it must stay short (~40 ms). Links that
# carry many nodes' streams (relay to relay) may need more: `work_rate`, `work_burst`.
WORK_RATE = 10_000.0
WORK_BURST = 2_048.0
# While reading is paused for write backpressure, let one read in this often (see above).
READ_PROBE_INTERVAL = 1.0
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024
READ_PROBE_MAX_BUFFER = 2 * WRITE_HIGH_WATER


class ReadBuffer:
    """The read buffer every link of a node shares (see the module docstring)."""

    __slots__ = ("view",)

    def __init__(self, size: int = READ_BUFFER_SIZE) -> None:
        self.view = memoryview(bytearray(size))


class _KickBatch:
    """Links kicked while some input is handled, written when that input is done."""

    __slots__ = ("links", "open")

    def __init__(self) -> None:
        self.open = False
        self.links: list[LinkTransport[object]] = []


_BATCH = _KickBatch()

Result = TypeVar("Result")


def flush_kicked_after(handle: Callable[..., Result], *args: object) -> Result:
    """Run `handle(*args)` (one input of the loop: a link's or a local socket's bytes, a timer);
    every link kicked meanwhile is written right after it, before the loop's next pass. Nested
    calls join the outermost one."""
    batch = _BATCH
    if batch.open:
        return handle(*args)
    batch.open = True
    try:
        return handle(*args)
    finally:
        links = batch.links
        index = 0
        try:
            while index < len(links):  # writing one link can kick others: they join the list
                link = links[index]
                index += 1
                if not link._flush_scheduled:  # written since it was kicked
                    continue
                link._flush_scheduled = False
                if not link.closed:
                    try:
                        link._after_input()
                    except Exception as error:  # as the loop does for a failing callback
                        link.loop.call_exception_handler(
                            {"message": "error writing a kicked link", "exception": error}
                        )
        finally:
            links.clear()
            batch.open = False


AppState = TypeVar("AppState", covariant=True)
HandledState = TypeVar("HandledState", contravariant=True)


class LinkHandler(Protocol[HandledState]):
    """What an application does with a link's life and events."""

    def link_event(self, link: LinkTransport[HandledState], event: Event) -> None:
        """One event of the core, in order (handle it with `match` and `assert_never`)."""

    def link_failed(self, link: LinkTransport[HandledState], error: ProtocolError) -> None:
        """The peer broke the protocol; the link is aborted right after (then `link_lost`)."""

    def link_lost(self, link: LinkTransport[HandledState], reason: str) -> None:
        """The link is gone (closed by either side, failed, or the connection dropped)."""

    def link_writable(self, link: LinkTransport[HandledState]) -> None:
        """The write buffer drained below its low-water mark: stream data held back while
        `link.write_paused` may flow again."""


class LinkTransport(asyncio.BufferedProtocol, Generic[AppState]):
    """asyncio protocol for one link; `conn` is the protocol core object, `app` the
    application's state for this link."""

    def __init__(
        self,
        conn: LinkConnection,
        handler: LinkHandler[AppState],
        app: AppState,
        *,
        on_connection_made: Callable[[LinkTransport[AppState]], bool] | None = None,
        read_buffer: ReadBuffer | None = None,
        work_rate: float = WORK_RATE,
        work_burst: float = WORK_BURST,
        on_work_paused: Callable[[LinkTransport[AppState]], None] | None = None,
    ) -> None:
        self.conn = conn
        self.handler = handler
        self._app = app
        self.on_connection_made = on_connection_made
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peername: str = "?"
        self.closed = False
        self.write_paused = False
        self._read_buffer = read_buffer if read_buffer is not None else ReadBuffer()
        self._read_size = PRE_AUTH_READ
        self.work_rate = work_rate
        self.work_burst = work_burst
        self._work_tokens = work_burst
        self._work_at = monotonic()
        self._work_done = 0  # records + messages the core had processed before this read
        self._work_paused = False
        self._work_timer: asyncio.TimerHandle | None = None
        self.work_pauses = 0  # how often this link was held back for its work budget
        self.on_work_paused = on_work_paused
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._timer_version = -1  # the core's deadline_version when the timer was armed
        self._awaiting_established = True  # established_waiter not yet done
        self._lost_reported = False
        self._reading_paused = False
        self._probe: asyncio.TimerHandle | None = None
        self.established_waiter: asyncio.Future[None] = self.loop.create_future()

    @property
    def app(self) -> AppState:
        """The application's state for this link (its own dataclass)."""
        return self._app

    @property
    def is_initiator(self) -> bool:
        return self.conn.is_initiator

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
        return self._read_buffer.view[: self._read_size]

    def buffer_updated(self, nbytes: int) -> None:
        if not self.closed:
            flush_kicked_after(self._input, nbytes)

    def _input(self, nbytes: int) -> None:
        if self.write_paused and not self._reading_paused:  # a probe read: pause again
            self._pause_reading()
        conn = self.conn
        now = monotonic()
        try:
            # A view of the shared buffer: the core copies whatever it keeps.
            conn.receive_data(self._read_buffer.view[:nbytes], now)
        except ProtocolError as error:
            self._fail(error)
            return
        except StoreUnavailable as error:  # our own fault: no security event, no traceback
            log.warning("link %s refused: %s", self.peername, error)
            self.abort(f"local error: {error.kind}")
            return
        if conn.established:
            self._charge_work(nbytes, now)
        self._after_input()

    # ------------------------------------------------------------------ the work budget

    def _charge_work(self, nbytes: int, now: float) -> None:
        done = self.conn.stats.records_in
        used, self._work_done = done - self._work_done, done
        self._read_size = READ_BUFFER_SIZE if used * DENSE_BYTES_PER_UNIT <= nbytes else DENSE_READ
        tokens = min(self.work_burst, self._work_tokens + (now - self._work_at) * self.work_rate)
        self._work_at = now
        self._work_tokens = tokens - used
        if self._work_tokens < 0 and not self._work_paused:
            self._work_paused = True
            self.work_pauses += 1
            if self.on_work_paused is not None:
                self.on_work_paused(self)
            transport = self.transport
            if transport is not None and not transport.is_closing() and not self._reading_paused:
                transport.pause_reading()
            self._work_timer = self.loop.call_later(
                -self._work_tokens / self.work_rate, self._work_earned
            )

    def _work_earned(self) -> None:
        """The budget is back above zero: read again (unless write backpressure holds it)."""
        self._work_timer = None
        self._work_paused = False
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return
        if not self._reading_paused:
            transport.resume_reading()

    def _cancel_work_timer(self) -> None:
        if self._work_timer is not None:
            self._work_timer.cancel()
            self._work_timer = None

    def eof_received(self) -> bool:
        self._lost("peer closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._cancel_probe()
        self._cancel_work_timer()
        self._lost(f"connection lost: {exc}" if exc else "connection closed")

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._cancel_probe()
        if self._reading_paused:
            self._reading_paused = False
            transport = self.transport
            if transport is not None and not transport.is_closing() and not self._work_paused:
                transport.resume_reading()
        if not self.closed:
            self.handler.link_writable(self)

    def _pause_reading(self) -> None:
        transport = self.transport
        if self._reading_paused or transport is None or transport.is_closing():
            return
        if not self._work_paused:
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
        if not self.transport.is_closing() and not self._work_paused:
            self.transport.resume_reading()

    def _cancel_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    # ------------------------------------------------------------------ driving the core

    def _after_input(self) -> None:
        """Hand every pending event to the application, then write and re-arm the timer."""
        conn = self.conn
        events = conn.pending_events
        try:
            while events:
                event = events.popleft()
                if self._awaiting_established and conn.established:
                    self._established()
                self.handler.link_event(self, event)
                if self.closed:
                    return
        except ProtocolError as error:
            self._fail(error)
            return
        if self._awaiting_established and conn.established:
            self._established()
        self.flush()

    def _established(self) -> None:
        self._awaiting_established = False
        self.established_waiter.set_result(None)
        self._read_size = READ_BUFFER_SIZE  # authenticated: full reads (and the work budget)
        self._work_done = self.conn.stats.records_in

    def kick(self) -> None:
        """The application changed the core's state: write (coalesced) when the input being
        handled is done, or at the loop's next pass (see the module docstring)."""
        if not self._flush_scheduled and not self.closed:
            self._flush_scheduled = True
            if _BATCH.open:
                _BATCH.links.append(self)
            else:
                self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        if self._flush_scheduled:  # not written by a batch since
            self._flush_scheduled = False
            if not self.closed:
                flush_kicked_after(self._after_input)

    def flush(self) -> None:
        # Whatever a kick asked for is written now: a pending kick has nothing left to do.
        self._flush_scheduled = False
        if self.closed or self.transport is None:
            return
        data = self.conn.data_to_send(monotonic())
        if data:
            self.transport.write(data)
        self._arm_timer()

    def _arm_timer(self) -> None:
        conn = self.conn
        version = conn.deadline_version
        if version == self._timer_version and self._timer is not None:
            return  # the deadline can only have moved later: the timer fires first
        self._timer_version = version
        deadline = conn.next_timer_deadline()
        if deadline is None:
            self._cancel_timer()
            return
        current = self._timer_deadline
        if current is not None and current <= deadline:
            return  # fires first, then re-arms (see the module docstring)
        self._cancel_timer()
        self._timer_deadline = deadline
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
        if not self.closed:
            flush_kicked_after(self._timer_due)

    def _timer_due(self) -> None:
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
        self.conn.close(reason, monotonic())
        self.flush()
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
        self._cancel_work_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if not self.established_waiter.done():
            self._awaiting_established = False
            self.established_waiter.set_exception(ConnectionError(reason))
            self.established_waiter.exception()  # mark retrieved: nobody may be waiting
        self.handler.link_lost(self, reason)
