"""Security events of the relay's links (docs/security-events.md), with their metrics and the
counts that persist: failed handshakes and protocol faults, non-fatal notices, rekeys, links a
new policy refuses."""

from __future__ import annotations

import collections

from altmesh import events as ev
from altmesh.keyfile import encode_public_key
from altmesh.metrics import NodeMetrics
from altmesh.protocol import ProtocolError
from altmesh.relay.link_state import RelayLink


def _key_text(key: bytes | None) -> str | None:
    return encode_public_key(key) if key is not None else None


class LinkSecurityLog:
    """Turns what happens on links into security events and counters."""

    def __init__(
        self,
        events: ev.SecurityEventLog,
        metrics: NodeMetrics,
        unsaved: collections.Counter[str],
    ) -> None:
        self.events = events
        self.metrics = metrics
        self.unsaved = unsaved

    def failed(self, link: RelayLink, error: ProtocolError) -> None:
        """The peer broke the protocol (the link is aborted)."""
        during_handshake = not link.app.established
        event = ev.event_for_protocol_error(error, during_handshake=during_handshake)
        if during_handshake:
            self.metrics.handshakes.labels("failed").inc()
            self.unsaved["handshakes_failed"] += 1
        self.metrics.rejections.labels(error.kind).inc()
        self.unsaved[f"rejected_{error.kind}"] += 1
        self.events.emit(
            event,
            error.kind,
            peer=link.peername,
            peer_key=_key_text(link.conn.remote_static),
            detail=str(error),
        )

    def notice(self, link: RelayLink, kind: str, detail: str) -> None:
        """A non-fatal fault of the peer (the link lives on)."""
        self.metrics.rejections.labels(kind).inc()
        self.events.emit(
            ev.PROTOCOL_VIOLATION,
            kind,
            peer=link.peername,
            peer_key=_key_text(link.conn.remote_static),
            detail=detail,
        )

    def rekeyed(self, link: RelayLink, initiated_by_us: bool) -> None:
        self.metrics.rekeys.inc()
        self.events.emit(
            ev.REKEY,
            peer=link.peername,
            peer_address=link.conn.remote_address,
            initiated_by_us=initiated_by_us,
        )

    def refused_after_reload(self, link: RelayLink, remote: bytes) -> None:
        """A reloaded policy no longer allows the key of a live link (it is closed)."""
        self.events.emit(
            ev.KEY_REFUSED,
            "policy_reload",
            peer=link.peername,
            peer_key=encode_public_key(remote),
        )
