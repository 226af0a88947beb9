"""Link costs: the smoothed RTT of a link, quantised, plus a fixed cost per hop, with hysteresis.

Each PING/PONG sample moves the smoothed RTT by `rtt_smoothing` of the difference (an EWMA, as
TCP's SRTT). The cost a relay announces for a link changes only when the cost of the smoothed RTT
differs from it by more than `max(cost_change_minimum, cost_change_fraction * announced)`, so
that jitter neither re-floods the mesh nor moves routes back and forth.
"""

from __future__ import annotations

import math

from altmesh.mesh.config import RoutingConfig
from altmesh.mesh.constants import MAX_COST


def cost_for_rtt(rtt: float, config: RoutingConfig) -> int:
    """The cost of a link with this (smoothed) round-trip time, in 1..MAX_COST."""
    return max(1, min(MAX_COST, config.hop_cost + round(rtt / config.rtt_quantum)))


class LinkCost:
    """The cost state of one of our links: smoothed RTT and the cost we announce for it."""

    __slots__ = ("_config", "announced", "samples", "smoothed_rtt")

    def __init__(self, config: RoutingConfig) -> None:
        self._config = config
        self.smoothed_rtt = config.initial_rtt
        self.samples = 0
        self.announced = cost_for_rtt(self.smoothed_rtt, config)

    def observe(self, rtt: float) -> bool:
        """Take one RTT sample; return whether the announced cost changed (hysteresis applied).

        The first sample replaces the initial guess (smoothed RTT and announced cost) instead of
        being averaged with it.
        """
        if not math.isfinite(rtt) or rtt < 0:
            raise ValueError(f"an RTT is a finite number of seconds >= 0, not {rtt!r}")
        first = self.samples == 0
        self.samples += 1
        if first:  # a measurement replaces the guess, whatever the hysteresis
            self.smoothed_rtt = rtt
            cost = cost_for_rtt(rtt, self._config)
            changed, self.announced = cost != self.announced, cost
            return changed
        self.smoothed_rtt += self._config.rtt_smoothing * (rtt - self.smoothed_rtt)
        cost = cost_for_rtt(self.smoothed_rtt, self._config)
        threshold = max(
            self._config.cost_change_minimum, self._config.cost_change_fraction * self.announced
        )
        if abs(cost - self.announced) <= threshold:
            return False
        self.announced = cost
        return True
