"""Reconnect backoff shared by every node that keeps a link up: clients and services to their
relay, relays to their mesh peers."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with full jitter: the n-th retry waits uniform(low, min(high, low*2^n)).

    Jitter spreads the reconnects of many nodes after a relay restart over the whole window,
    so they do not all hit the relay (and its handshake rate limit) at the same instant.
    """

    def __init__(self, low: float, high: float, rng: random.Random | None = None) -> None:
        self.low = low
        self.high = high
        self.rng = rng or random.Random()
        self.window = low

    def next_delay(self) -> float:
        delay = self.rng.uniform(self.low, self.window)
        self.window = min(self.high, self.window * 2)
        return delay

    def reset(self) -> None:
        self.window = self.low
