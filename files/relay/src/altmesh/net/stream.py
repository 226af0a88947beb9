"""A local TCP connection joined to one link stream through an end-to-end session.

Plaintext from the local socket is encrypted by the stream's `EndToEndSession` and offered to the
link as far as the stream's credit allows; the rest waits in a queue and the local socket stops
being read until `StreamWritable` arrives. Data from the link is decrypted and written locally;
it is acknowledged (credit returned to the far end) only while the local socket keeps up, so a
slow local reader slows the far sender instead of filling memory.

Each direction ends with the session's authenticated CLOSE followed by the link FIN. A FIN
without CLOSE means someone on the path cut the stream short: the local socket is aborted (the
application sees a reset, never a clean end of file) and a security event is logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Protocol, cast

from altmesh.net.link import LinkTransport, flush_kicked_after
from altmesh.protocol import EndToEndSession, LinkNotEstablished, ProtocolError, StreamPath
from altmesh.protocol.constants import ResetCode

log = logging.getLogger(__name__)

# Stop reading the local socket while this much ciphertext waits for credit.
LOCAL_READ_PAUSE_BYTES = 256 * 1024
# The end nodes' RESET codes (altmesh.protocol.constants.ResetCode, docs/protocol.md 6.1).
RESET_GIVEN_UP = ResetCode.GIVEN_UP
RESET_LOCAL_CLOSED = ResetCode.LOCAL_CLOSED
RESET_E2E_FAILED = ResetCode.E2E_FAILED
RESET_TARGET_UNREACHABLE = ResetCode.TARGET_UNREACHABLE
RESET_PORT_REFUSED = ResetCode.PORT_REFUSED


# SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


def abort_with_reset(transport: asyncio.Transport) -> None:
    """Close a local connection so that its application sees a reset, not an end of file: a
    stream that did not end cleanly must never look like a complete transfer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


class CarriesStreams(Protocol):
    """Per-link application state of a node whose links carry E2EStreams: the streams by id."""

    @property
    def streams(self) -> dict[int, E2EStream]: ...


class StreamCounters:
    """Byte counts a node reports in `altmesh status` and metrics."""

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.streams_open = 0
        self.streams_total = 0


class E2EStream(asyncio.Protocol):
    """Base class: the open phase shared by client-side and service-side streams."""

    def __init__(self, counters: StreamCounters, on_done: Callable[[E2EStream], None]) -> None:
        self.counters = counters
        self.on_done = on_done
        self.on_security: Callable[[ProtocolError], None] | None = None
        self.local: asyncio.Transport | None = None
        self.link: LinkTransport[CarriesStreams] | None = None
        self.stream_id = -1
        self.e2e: EndToEndSession | None = None
        self.open = False  # e2e established and local side connected: plaintext flows
        self.finished = False
        self._out: collections.deque[bytes] = collections.deque()
        self._out_bytes = 0
        self._local_eof = False
        self._fin_sent = False
        self._close_queued = False
        self._fin_received = False
        self._local_reading_paused = False
        self._local_write_paused = False
        self._unacked = 0
        self._early_plaintext: list[bytes] = []
        self._e2e_up = False
        # The relays that carry the stream, as the first relay reported them (STREAM_PATH).
        self.path: StreamPath | None = None
        self.sent = 0  # plaintext bytes of this stream, for status
        self.received = 0

    # ---------------------------------------------------------------- binding to a link stream

    def attach(
        self, link: LinkTransport[CarriesStreams], stream_id: int, e2e: EndToEndSession
    ) -> None:
        self.link = link
        self.stream_id = stream_id
        self.e2e = e2e
        link.app.streams[stream_id] = self
        self.counters.streams_open += 1
        self.counters.streams_total += 1

    def send_raw(self, data: bytes) -> None:
        """Queue bytes (already e2e ciphertext or handshake) for the link stream; the link is
        written right after, not at the loop's next pass (a handshake message is on the path of
        every new stream)."""
        if data:
            self._out.append(data)
            self._out_bytes += len(data)
            flush_kicked_after(self._pump)

    def queue_plaintext(self, data: bytes) -> None:
        """Encrypt local bytes and queue them (sent by the next `_pump`)."""
        assert self.e2e is not None
        self.counters.bytes_out += len(data)
        self.sent += len(data)
        ciphertext = self.e2e.encrypt(data)
        self._out.append(ciphertext)
        self._out_bytes += len(ciphertext)

    def _pump(self) -> None:
        link = self.link
        if link is None or link.closed or self.finished:
            return
        conn = link.conn
        sid = self.stream_id
        out = self._out
        try:
            if self._local_eof and self.open and not self._close_queued:
                # After every data message: the far end accepts our FIN only after this.
                assert self.e2e is not None
                self._close_queued = True
                closing = self.e2e.close()
                out.append(closing)
                self._out_bytes += len(closing)
            while out and not link.write_paused:  # resumed by stream_writable
                chunk = out[0]
                accepted = conn.send_stream_data(sid, chunk)
                if accepted <= 0:
                    break
                self._out_bytes -= accepted
                if accepted < len(chunk):
                    out[0] = chunk[accepted:]
                    break
                out.popleft()
            if not out and self._local_eof and not self._fin_sent and self.open:
                conn.end_stream(sid)
                self._fin_sent = True
        except LinkNotEstablished as error:  # the link is ending: link_lost follows
            log.debug("stream %d send failed: %s", sid, error)
            self.finish(reset=False)
            return
        link.kick()
        self._update_local_reading()
        self._maybe_done()

    def _update_local_reading(self) -> None:
        if self.local is None or self.local.is_closing():
            return
        should_pause = self._out_bytes >= LOCAL_READ_PAUSE_BYTES or not self.open
        if should_pause and not self._local_reading_paused:
            self.local.pause_reading()
            self._local_reading_paused = True
        elif not should_pause and self._local_reading_paused:
            self.local.resume_reading()
            self._local_reading_paused = False

    # ---------------------------------------------------------------- events from the link

    def stream_data(self, data: bytes) -> None:
        assert self.e2e is not None and self.link is not None
        try:
            chunks = self.e2e.receive(data)
        except ProtocolError as error:
            self.e2e_failed(error)
            return
        if not self._e2e_up and self.handshake_done():
            self._e2e_up = True
            self.e2e_established()
            if self.finished:
                return
        local = self.local
        if local is None:
            self._early_plaintext.extend(chunks)  # service side: target not connected yet
        elif not local.is_closing():
            size = 0
            for chunk in chunks:
                local.write(chunk)
                size += len(chunk)
            self.counters.bytes_in += size
            self.received += size
        if self._local_write_paused:
            self._unacked += len(data)
        else:
            self._acknowledge(len(data))

    def _acknowledge(self, nbytes: int) -> None:
        link = self.link
        if nbytes and link is not None and not link.closed and not self.finished:
            link.conn.acknowledge(self.stream_id, nbytes)
            link.kick()

    def stream_writable(self) -> None:
        self._pump()

    def stream_ended(self) -> None:
        self._fin_received = True
        assert self.e2e is not None
        try:
            self.e2e.receive_end()  # FIN is a link record: only CLOSE proves the end
        except ProtocolError as error:
            self.e2e_failed(error)
            return
        if self.local is not None and not self.local.is_closing():
            if self.local.can_write_eof():
                self.local.write_eof()
            else:
                self.local.close()
        self._maybe_done()

    def stream_reset(self, reason: str, code: int = RESET_GIVEN_UP) -> None:
        log.debug("stream %d reset by peer (code %d): %s", self.stream_id, code, reason)
        self.finish(reset=False)

    def link_lost(self) -> None:
        self.finish(reset=False)

    # ---------------------------------------------------------------- hooks for subclasses

    def handshake_done(self) -> bool:
        return self.e2e is not None and self.e2e.established

    def e2e_established(self) -> None:
        """The end-to-end handshake finished (subclasses connect or reply to the user)."""

    def e2e_failed(self, error: ProtocolError) -> None:
        log.warning("stream %d: end-to-end session failed: %s", self.stream_id, error)
        if self.on_security is not None:
            self.on_security(error)
        self.finish(reset=True, code=RESET_E2E_FAILED, reason=error.kind)

    def start_flowing(self) -> None:
        """Both ends are ready: read the local socket, acknowledge, forward."""
        self.open = True
        self._update_local_reading()
        self._pump()

    # ---------------------------------------------------------------- local socket (asyncio)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.local = cast(asyncio.Transport, transport)
        for chunk in self._early_plaintext:
            self.local.write(chunk)
            self.counters.bytes_in += len(chunk)
            self.received += len(chunk)
        self._early_plaintext.clear()
        # The far end may have finished its direction before we connected.
        if self._fin_received and not self.finished and self.local.can_write_eof():
            self.local.write_eof()

    def data_received(self, data: bytes) -> None:
        if not self.open or self.e2e is None:
            self.early_data(data)
            return
        if self._close_queued:  # cannot happen: asyncio reads nothing after end of file
            return
        self.queue_plaintext(data)
        # The link is written right after, not at the loop's next pass (net/link.py).
        flush_kicked_after(self._pump)

    def early_data(self, data: bytes) -> None:
        """Bytes from the local socket before the stream is open (SOCKS negotiation)."""

    def eof_received(self) -> bool:
        self._local_eof = True
        flush_kicked_after(self._pump)
        return True  # keep the local socket open for the other direction

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            # Half-closes keep the socket; losing it early means the local side went away.
            self.finish(reset=True, code=RESET_LOCAL_CLOSED, reason="local connection closed")

    def pause_writing(self) -> None:
        self._local_write_paused = True

    def resume_writing(self) -> None:
        self._local_write_paused = False
        unacked, self._unacked = self._unacked, 0
        self._acknowledge(unacked)

    # ---------------------------------------------------------------- ending

    def _maybe_done(self) -> None:
        if self._fin_sent and self._fin_received and not self.finished:
            self.finish(reset=False)

    def finish(self, reset: bool, code: int = RESET_GIVEN_UP, reason: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        link = self.link
        if link is not None:
            streams = link.app.streams
            if streams.get(self.stream_id) is self:
                del streams[self.stream_id]
                self.counters.streams_open -= 1
            if reset and not link.closed:
                link.conn.reset_stream(self.stream_id, code, reason)
                link.kick()
        if self.local is not None and not self.local.is_closing():
            if reset or not self._fin_received:
                abort_with_reset(self.local)
            else:
                self.local.close()
        self._out.clear()
        self.on_done(self)
