"""Routed streams: a stream opened on one link and carried on another.

A route is two halves, each a stream on some link. The relay copies a half's bytes (end-to-end
ciphertext) to the other half's stream as far as that link's credit allows, and acknowledges them
to the source only once the other link took them, so the receiver's flow control reaches the
sender and the relay never buffers more than one window per half. A half needs nothing of its
link but a stream id and the link's `routes`: the two halves may sit on any two links (a client's,
a service's, or a relay-to-relay link of the mesh). On a path of several relays each one holds
just its two halves, and the credit of each hop holds back the one before it, so a stalled
receiver at the far end stops the sender and no relay buffers more than its windows.

Which link the other half goes to is decided before (`relay/next_hop.py`); a refusal resets the
stream with its code. Ending: a half reset by its peer resets the other half with the same code
(end-to-end codes pass through every relay unchanged), one reset by a link's core for a fault
with PATH_FAULT, and a half whose link is lost resets the other with LINK_LOST: a routed stream is
never cut short silently.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from altmesh import events as ev
from altmesh.keyfile import encode_public_key
from altmesh.metrics import NodeMetrics
from altmesh.net.link import LinkTransport
from altmesh.protocol import LinkNotEstablished, StreamLimitReached, StreamOpened
from altmesh.protocol.constants import CORE_RESET_CODES, ResetCode
from altmesh.relay.stream_budget import (
    DEFAULT_MAX_BUFFERED_BYTES,
    Admission,
    BufferBudget,
    StreamShares,
)

log = logging.getLogger("altmesh.relay")

CAPTURE_LIMIT = 64 * 1024 * 1024  # forwarded_capture_file stops growing here


class CarriesRoutes(Protocol):
    """Per-link state of a link that carries halves of routes: the routes by stream id."""

    @property
    def routes(self) -> dict[int, tuple[Route, Half]]: ...


RouteLink = LinkTransport[CarriesRoutes]


@dataclass
class Half:
    """One side of a routed stream: a link and the stream's id on it."""

    link: RouteLink
    stream_id: int
    # bytes received from this side not yet accepted by the other link
    pending: collections.deque[bytes] = field(default_factory=collections.deque)
    fin_received: bool = False
    fin_sent: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why a stream cannot be routed: its RESET code, the reason sent with it, and the label
    of `altmesh_rejections_total` it counts under."""

    code: int
    reason: str
    metric: str


@dataclass
class Route:
    a: Half  # the half on the link the stream was opened from
    b: Half  # the half on the link it was opened towards
    closed: bool = False

    def other(self, half: Half) -> Half:
        return self.b if half is self.a else self.a


@dataclass
class _Waiting:
    route: Route
    nbytes: int = 0


class Forwarder:
    """Every route of the relay, and the copying between their halves."""

    def __init__(
        self,
        metrics: NodeMetrics,
        unsaved: collections.Counter[str],
        capture: BinaryIO | None = None,
        *,
        events: ev.SecurityEventLog | None = None,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    ) -> None:
        """`unsaved`: counts to add to the persistent totals; `capture`: an audit file that gets
        every stream byte the relay sees (after link decryption), up to CAPTURE_LIMIT. Stream
        slots and buffered bytes are shared fairly (`stream_budget.py`)."""
        self.metrics = metrics
        self.unsaved = unsaved
        self.capture = capture
        self.events = events
        self.shares: StreamShares[RouteLink, Route] = StreamShares()
        self.buffer = BufferBudget(max_buffered_bytes)
        self._waiting: dict[int, _Waiting] = {}  # id(route) -> bytes waiting in it

    # ---------------------------------------------------------------- opening
    def open_route(
        self,
        source: RouteLink,
        event: StreamOpened,
        target: RouteLink | Refusal,
        hops_left: int | None = None,
    ) -> Route | None:
        """The peer of `source` opened a stream; carry it on `target` (with RELAY_OPEN and
        `hops_left` when that is a relay link), or reset it with a refusal's code."""
        if not isinstance(target, Refusal) and (target.closed or target is source):
            target = Refusal(ResetCode.UNREACHABLE, "no usable link towards it", "unreachable")
        if isinstance(target, Refusal):
            self.refuse(source, event.stream_id, target)
            return None
        slots, free = target.conn.stream_slots
        admission: Admission[Route] = self.shares.admit(source, target, slots, free)
        if not admission.allowed:
            self._refuse_share(source, target, event, admission, slots)
            return None
        if admission.preempt is not None:
            self._preempt(admission.preempt, source)
        try:
            target_id = target.conn.open_stream(event.destination, event.port, hops_left=hops_left)
        except StreamLimitReached as error:
            busy = f"the next link cannot take another stream: {error.kind}"
            self.refuse(source, event.stream_id, Refusal(ResetCode.NEXT_HOP_BUSY, busy, error.kind))
            return None
        except LinkNotEstablished as error:
            ending = f"the next link is ending: {error.kind}"
            self.refuse(source, event.stream_id, Refusal(ResetCode.LINK_LOST, ending, error.kind))
            return None
        route = Route(Half(source, event.stream_id), Half(target, target_id))
        source.app.routes[event.stream_id] = (route, route.a)
        target.app.routes[target_id] = (route, route.b)
        self.shares.added(route, source, target)
        self.metrics.streams.inc()
        self.metrics.streams_opened.inc()
        self.unsaved["streams_routed"] += 1
        target.kick()
        return route

    def refuse(self, source: RouteLink, stream_id: int, refusal: Refusal) -> None:
        self.metrics.rejections.labels(refusal.metric).inc()
        source.conn.reset_stream(stream_id, refusal.code, refusal.reason)
        source.kick()

    # ---------------------------------------------------------------- stream events
    def on_data(self, link: RouteLink, stream_id: int, data: bytes) -> None:
        entry = link.app.routes.get(stream_id)
        if entry is None:
            # Data for a stream we already reset: give the credit back and drop it.
            link.conn.acknowledge(stream_id, len(data))
            return
        route, half = entry
        size = len(data)
        self.metrics.stream_bytes_in += size
        capture = self.capture
        if capture is not None and capture.tell() < CAPTURE_LIMIT:
            capture.write(data)
            capture.flush()
        dest = route.b if half is route.a else route.a
        if half.pending or route.closed or dest.link.write_paused:
            # Bytes wait already (keep their order), or the destination does not read.
            half.pending.append(data)
            self._wait(route, size)
            self._forward(route, half)
        else:
            # The usual case, `_forward` written out for one chunk that waits for nothing: the
            # destination takes it now (as far as its credit goes), and only what it does not
            # take waits in the relay.
            try:
                accepted = dest.link.conn.send_stream_data(dest.stream_id, data)
            except LinkNotEstablished as error:  # the destination link is ending
                log.debug("route failed: %s", error)
                self._close_route(route, reset_other_of=dest, reason="a link of the path was lost")
                return
            if accepted < size:
                half.pending.append(data[accepted:] if accepted else data)
                self._wait(route, size - accepted)
            if accepted:
                self._carried(route, half, accepted)
            dest.link.kick()
        if self.buffer.over:
            self._shed()

    def on_writable(self, link: RouteLink, stream_id: int) -> None:
        """Credit arrived on this half: the other half's bytes may move on to it."""
        entry = link.app.routes.get(stream_id)
        if entry is not None:
            route, half = entry
            self._forward(route, route.other(half))

    def on_ended(self, link: RouteLink, stream_id: int) -> None:
        entry = link.app.routes.get(stream_id)
        if entry is not None:
            route, half = entry
            half.fin_received = True
            self._forward(route, half)

    def on_reset(self, link: RouteLink, stream_id: int, code: int, reason: str) -> None:
        """The peer of `link` (or its core) reset this half: the other half is reset too, with
        the same code unless the core's (a fault of that one link, not of the stream's ends)."""
        entry = link.app.routes.get(stream_id)
        if entry is not None:
            route, half = entry
            if code >= CORE_RESET_CODES:
                code, reason = ResetCode.PATH_FAULT, f"a link of the path reset it: {reason}"
            self._close_route(route, reset_other_of=half, reason=reason, code=code)

    # ---------------------------------------------------------------- link events
    def link_writable(self, link: RouteLink) -> None:
        """The link's write buffer drained: everything held back for it may move."""
        for route, half in list(link.app.routes.values()):
            self._forward(route, route.other(half))

    def link_lost(self, link: RouteLink) -> None:
        """Every route through the link ends; the other halves are reset (never truncated)."""
        for route, half in list(link.app.routes.values()):
            self._close_route(route, reset_other_of=half, reason="a link of the path was lost")

    # ---------------------------------------------------------------- copying
    def _forward(self, route: Route, source: Half) -> None:
        """Move what `source` received to the other side, as far as its credit allows."""
        if route.closed:
            return
        dest = route.other(source)
        if dest.link.write_paused and source.pending:
            # The destination does not read what it is sent: hold the data here (and its
            # credit from the source) until link_writable, so its write buffer stays bounded.
            return
        conn = dest.link.conn
        pending = source.pending
        forwarded = 0
        try:
            while pending:
                chunk = pending[0]
                accepted = conn.send_stream_data(dest.stream_id, chunk)
                if accepted <= 0:
                    break
                forwarded += accepted
                if accepted < len(chunk):
                    pending[0] = chunk[accepted:]
                    break
                pending.popleft()
            if not pending and source.fin_received and not dest.fin_sent:
                conn.end_stream(dest.stream_id)
                dest.fin_sent = True
        except LinkNotEstablished as error:  # the destination link is ending
            log.debug("route failed: %s", error)
            self._close_route(route, reset_other_of=dest, reason="a link of the path was lost")
            return
        if forwarded:
            self._wait(route, -forwarded)
            self._carried(route, source, forwarded)
        dest.link.kick()
        if route.a.fin_sent and route.b.fin_sent:
            self._close_route(route, reset_other_of=None, reason="")

    def _carried(self, route: Route, source: Half, nbytes: int) -> None:
        """`nbytes` that `source` received left on the other half: counted, and acknowledged to
        the source (its credit comes back)."""
        self.shares.carried(route, nbytes)
        self.metrics.stream_bytes_out += nbytes
        self.unsaved["bytes_forwarded"] += nbytes
        if source.link.conn.acknowledge(source.stream_id, nbytes):
            source.link.kick()

    def _close_route(
        self,
        route: Route,
        reset_other_of: Half | None,
        reason: str,
        code: int = ResetCode.LINK_LOST,
    ) -> None:
        if route.closed:
            return
        route.closed = True
        self.metrics.streams.dec()
        self.shares.removed(route)
        waiting = self._waiting.pop(id(route), None)
        if waiting is not None:
            self.buffer.remove(waiting.nbytes)
        for half in (route.a, route.b):
            half.link.app.routes.pop(half.stream_id, None)
            half.pending.clear()
        if reset_other_of is not None:
            other = route.other(reset_other_of)
            if not other.link.closed:
                other.link.conn.reset_stream(other.stream_id, code, reason)
                other.link.kick()

    # ---------------------------------------------------------------- fair shares
    def _refuse_share(
        self,
        source: RouteLink,
        target: RouteLink,
        event: StreamOpened,
        admission: Admission[Route],
        slots: int,
    ) -> None:
        self.metrics.rejections.labels("stream_share").inc()
        self._event(
            "stream_share",
            source,
            f"holds {admission.held} of the {slots} streams towards {event.destination}, "
            f"its fair share is {admission.fair_share}; stream refused",
        )
        source.conn.reset_stream(
            event.stream_id,
            ResetCode.RELAY_LIMIT,
            "this source's share of the destination's streams",
        )
        source.kick()

    def _preempt(self, route: Route, for_source: RouteLink) -> None:
        """Free a slot of the largest holder for a source below its share."""
        self.metrics.rejections.labels("stream_preempted").inc()
        self._event(
            "stream_preempted",
            route.a.link,
            f"holds more than its share of streams towards a destination another source "
            f"({for_source.peername}) needs; its oldest idle stream is reset",
        )
        self._abort(route, "preempted: the destination's streams are shared fairly")

    def _wait(self, route: Route, nbytes: int) -> None:
        entry = self._waiting.get(id(route))
        if entry is None:
            entry = self._waiting[id(route)] = _Waiting(route)
        entry.nbytes += nbytes
        if nbytes > 0:
            self.buffer.add(nbytes)
        else:
            self.buffer.remove(-nbytes)

    def _shed(self) -> None:
        """Over the relay's buffer budget: reset the routes that hold the most."""
        while self.buffer.over and self._waiting:
            most = max(self._waiting.values(), key=lambda entry: entry.nbytes)
            route, waiting = most.route, most.nbytes
            holder = route.a if route.a.pending else route.b
            self.metrics.rejections.labels("buffer_budget").inc()
            self._event(
                "buffer_budget",
                holder.link,
                f"the relay holds {self.buffer.buffered} bytes for slow receivers, more than "
                f"its budget of {self.buffer.max_buffered_bytes}; the stream holding the most "
                f"({waiting} bytes) is reset",
            )
            self._abort(route, "the relay's buffer budget is used up")

    def _abort(self, route: Route, reason: str) -> None:
        """Reset both halves of a route."""
        self._close_route(route, reset_other_of=None, reason=reason)
        for half in (route.a, route.b):
            if not half.link.closed:
                half.link.conn.reset_stream(half.stream_id, ResetCode.RELAY_LIMIT, reason)
                half.link.kick()

    def _event(self, reason: str, link: RouteLink, detail: str) -> None:
        if self.events is None:
            return
        remote = link.conn.remote_static
        self.events.emit(
            ev.RATE_LIMITED,
            reason,
            peer=link.peername,
            peer_key=encode_public_key(remote) if remote is not None else None,
            detail=detail,
        )

    @staticmethod
    def open_routes(links: Iterable[RouteLink]) -> int:
        """How many route halves the links carry (draining waits for them to end)."""
        return sum(len(link.app.routes) for link in links)
