"""Token buckets per source address: limits how fast one source may start handshakes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class SourceRateLimiter:
    """`allow(source, now)` spends one token; buckets refill at `rate` per second up to `burst`."""

    def __init__(self, rate: float, burst: int, max_sources: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._forget_full(now)
            bucket = self._buckets[source] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def _forget_full(self, now: float) -> None:
        # Buckets that have refilled carry no information; drop them to bound memory.
        full = [
            source
            for source, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst
        ]
        for source in full:
            del self._buckets[source]
        if len(self._buckets) >= self.max_sources:
            self._buckets.clear()
