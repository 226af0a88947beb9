"""Reconnect backoff: exponential window, full jitter, capped, reset after success."""

from __future__ import annotations

import random

from altmesh.backoff import Backoff


def test_backoff_window_doubles_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(40)]
    windows = [min(4.0, 0.5 * 2**n) for n in range(40)]
    assert all(0.5 <= d <= w for d, w in zip(delays, windows, strict=True))
    assert max(delays) > 2.0  # the window really grew
    assert len({round(d, 6) for d in delays[5:]}) > 30  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.next_delay() == 0.5
