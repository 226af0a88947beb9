"""Who may hold a link to the relay: the key policy, the handshake rate per source address, the
limit on links, and the limits on connections whose handshake is not complete yet (in all, and
per source address). A refused connection is aborted before its handshake is read.

A pending handshake holds little (its partial first message of at most 136 bytes and the link's
state objects, no read buffer of its own: see net/link.py), and the handshake timeout ends it;
the pending limits bound how many a crowd of silent connections can hold at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

from altmesh import events as ev
from altmesh.config import Config, ConfigError, RelaySettings
from altmesh.keyfile import decode_public_key
from altmesh.metrics import NodeMetrics
from altmesh.ratelimit import SourceRateLimiter


@dataclass
class Policy:
    mode: str  # "open" or "allowlist"
    allowed: frozenset[bytes]

    def allows(self, public_key: bytes) -> bool:
        return self.mode == "open" or public_key in self.allowed


def load_policy(config: Config) -> Policy:
    """The key policy of the relay's config (and its allowed_keys_file, read now)."""
    settings = config.relay
    assert settings is not None
    keys = {decode_public_key(k) for k in settings.allowed_keys}
    if settings.allowed_keys_file is not None:
        try:
            text = settings.allowed_keys_file.read_text()
        except OSError as err:
            raise ConfigError(
                "relay.allowed_keys_file", f"cannot read {settings.allowed_keys_file}: {err}"
            ) from None
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                try:
                    keys.add(decode_public_key(entry.split()[0]))
                except ValueError as err:
                    raise ConfigError("relay.allowed_keys_file", f"line {number}: {err}") from None
    return Policy(settings.policy, frozenset(keys))


DEFAULT_MAX_PENDING_HANDSHAKES = 2048
DEFAULT_MAX_PENDING_PER_SOURCE = 64


def source_of(peername: str) -> str:
    """The address part of `HOST:PORT` / `[v6]:PORT` (what limits per source count by)."""
    return peername.rsplit(":", 1)[0]


class Admission:
    """Admits connections (rate, link and pending-handshake limits) and authorises keys (the
    policy, which a reload replaces)."""

    def __init__(
        self,
        settings: RelaySettings,
        policy: Policy,
        metrics: NodeMetrics,
        events: ev.SecurityEventLog,
        *,
        max_pending: int = DEFAULT_MAX_PENDING_HANDSHAKES,
        max_pending_per_source: int = DEFAULT_MAX_PENDING_PER_SOURCE,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.metrics = metrics
        self.events = events
        self.limiter = SourceRateLimiter(settings.handshake_rate, settings.handshake_burst)
        self.max_pending = max_pending
        self.max_pending_per_source = max_pending_per_source
        self._pending: dict[Hashable, str] = {}  # connection -> its source
        self._pending_by_source: Counter[str] = Counter()

    def allows_key(self, public_key: bytes) -> bool:
        """The link responder's `authorize`: may this static key connect?"""
        return self.policy.allows(public_key)

    def admit(self, connection: Hashable, peername: str, open_links: int, now: float) -> bool:
        """May a new connection from `peername` start a handshake? (`now`: the loop's clock)
        If so it counts as pending until `handshake_ended(connection)`."""
        source = source_of(peername)
        if not self.limiter.allow(source, now):
            self.events.emit(ev.RATE_LIMITED, "handshake_rate", source=source, peer=peername)
            self.metrics.rejections.labels("rate_limited").inc()
            return False
        if open_links >= self.settings.max_links:
            self.metrics.rejections.labels("too_many_links").inc()
            return False
        if self._pending_by_source[source] >= self.max_pending_per_source:
            self._refuse_pending("pending_per_source", source, peername)
            return False
        if len(self._pending) >= self.max_pending:
            self._refuse_pending("pending_handshakes", source, peername)
            return False
        self._pending[connection] = source
        self._pending_by_source[source] += 1
        self.metrics.pending_handshakes.inc()
        return True

    def handshake_ended(self, connection: Hashable) -> None:
        """The connection completed its handshake or is gone: it is no longer pending."""
        source = self._pending.pop(connection, None)
        if source is None:
            return
        self._pending_by_source[source] -= 1
        if self._pending_by_source[source] <= 0:
            del self._pending_by_source[source]
        self.metrics.pending_handshakes.dec()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _refuse_pending(self, reason: str, source: str, peername: str) -> None:
        limit = self.max_pending_per_source if reason == "pending_per_source" else self.max_pending
        self.metrics.rejections.labels(reason).inc()
        self.events.emit(
            ev.RATE_LIMITED,
            reason,
            source=source,
            peer=peername,
            detail=f"{limit} connections are waiting for their handshake already",
        )
