"""Throttles: when the next origination, and the next shortest-path computation, may happen."""

from __future__ import annotations


class OriginationThrottle:
    """At most one origination per hold. The hold starts at `minimum`, doubles with each
    origination that follows the previous one's hold by less than `maximum` (changes keep coming:
    a flapping link), up to `maximum`, and falls back to `minimum` after a quiet `maximum`."""

    __slots__ = ("_last", "hold", "maximum", "minimum")

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.hold = minimum
        self._last: float | None = None

    def earliest(self) -> float:
        """The earliest time the next origination may happen."""
        return float("-inf") if self._last is None else self._last + self.hold

    def originated(self, now: float) -> None:
        if self._last is not None and now - (self._last + self.hold) < self.maximum:
            self.hold = min(self.hold * 2, self.maximum)
        else:
            self.hold = self.minimum
        self._last = now


class SpfThrottle:
    """When to recompute shortest paths: once the topology has been quiet for `delay` (a burst
    of changes, such as a relay's whole database arriving, gives one computation), but never
    later than `max_wait` after the first change, and at most once per `hold`."""

    __slots__ = ("_first_change", "_last", "delay", "due", "hold", "max_wait")

    def __init__(self, delay: float, hold: float, max_wait: float) -> None:
        self.delay = delay
        self.hold = hold
        self.max_wait = max_wait
        self.due: float | None = None
        self._first_change = 0.0
        self._last = float("-inf")

    def changed(self, now: float) -> None:
        if self.due is None:
            self._first_change = now
        latest = max(self._first_change + self.max_wait, self._last + self.hold)
        self.due = min(max(now + self.delay, self._last + self.hold), latest)

    def ran(self, now: float) -> None:
        self.due = None
        self._last = now
