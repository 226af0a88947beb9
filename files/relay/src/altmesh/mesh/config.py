"""RoutingConfig: every tunable of the routing engine, with its default and its valid range."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, fields

from altmesh.mesh.constants import MAX_LIFETIME, MAX_ORIGIN_ADDRESSES


@dataclass(frozen=True)
class RoutingConfig:
    """Tunables of `LinkStateRouter`; times in seconds. docs/routing.md explains each.

    Invalid values raise ValueError naming the field (`routing: hop_cost: ...`).
    """

    # Link cost = hop_cost + round(smoothed RTT / rtt_quantum), in 1..65535.
    hop_cost: int = 10
    rtt_quantum: float = 0.001
    rtt_smoothing: float = 0.125  # EWMA gain of each RTT sample (TCP's 1/8)
    initial_rtt: float = 0.05  # assumed for a link until its first RTT sample
    # Hysteresis: a link's announced cost changes only when the smoothed cost differs from it by
    # more than max(cost_change_minimum, cost_change_fraction * announced cost).
    cost_change_fraction: float = 0.25
    cost_change_minimum: int = 2
    # Origination throttle: at most one origination per hold; the hold starts at the minimum,
    # doubles while changes keep coming, and falls back after a quiet maximum.
    min_origination_interval: float = 1.0
    max_origination_interval: float = 32.0
    # A relay floods on a newer version of any one announcement at most this often, and sends
    # to any one neighbor at most once per flood_pacing (what is queued meanwhile coalesces).
    min_flood_interval: float = 0.5
    flood_pacing: float = 0.03
    # Shortest paths are recomputed once the topology has been quiet for spf_delay, at most
    # spf_max_wait after the first change, and at most once per spf_hold.
    spf_delay: float = 0.1
    spf_hold: float = 0.2
    spf_max_wait: float = 1.0
    # Ageing: own announcements carry `lifetime` and are refreshed every refresh_interval;
    # lifetimes received are capped at max_lifetime.
    lifetime: int = 3600
    refresh_interval: float = 1800.0
    max_lifetime: int = 7200
    # Database limits: what a hostile relay can make this relay hold.
    max_origins: int = 10_000
    max_destinations_per_origin: int = 16_384
    max_database_bytes: int = 32 * 2**20
    # The network's /48: when set, announced addresses outside it are malformed.
    prefix: ipaddress.IPv6Network | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name != "prefix" and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"routing: {field.name}: must be a number, not {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"routing: {field.name}: must be finite, not {value!r}")
        integers = (
            "hop_cost",
            "cost_change_minimum",
            "lifetime",
            "max_lifetime",
            "max_origins",
            "max_destinations_per_origin",
            "max_database_bytes",
        )
        for name in integers:
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"routing: {name}: must be an integer")
        _check(self, "hop_cost", 1, 10_000)
        _check(self, "rtt_quantum", 1e-6, 1.0)
        _check(self, "rtt_smoothing", 0.001, 1.0)
        _check(self, "initial_rtt", 0.0, 60.0)
        _check(self, "cost_change_fraction", 0.0, 10.0)
        _check(self, "cost_change_minimum", 0, 10_000)
        _check(self, "min_origination_interval", 0.0, 3600.0)
        _check(self, "max_origination_interval", self.min_origination_interval, 3600.0)
        _check(self, "min_flood_interval", 0.0, 3600.0)
        _check(self, "flood_pacing", 0.0, 1.0)
        _check(self, "spf_delay", 0.0, 60.0)
        _check(self, "spf_hold", 0.0, 60.0)
        _check(self, "spf_max_wait", self.spf_delay, 60.0)
        _check(self, "lifetime", 60, MAX_LIFETIME)
        _check(self, "max_lifetime", self.lifetime, MAX_LIFETIME)
        _check(self, "refresh_interval", 1.0, self.lifetime - self.max_origination_interval - 1)
        _check(self, "max_origins", 1, 10_000_000)
        _check(self, "max_destinations_per_origin", 0, MAX_ORIGIN_ADDRESSES)
        _check(self, "max_database_bytes", 65_536, 2**40)
        if self.prefix is not None and (
            not isinstance(self.prefix, ipaddress.IPv6Network) or self.prefix.prefixlen != 48
        ):
            raise ValueError(f"routing: prefix: must be an IPv6 /48 network, not {self.prefix!r}")


def _check(config: RoutingConfig, name: str, low: float, high: float) -> None:
    value = getattr(config, name)
    if not low <= value <= high:
        raise ValueError(f"routing: {name}: {value!r} is outside {low:g}..{high:g}")
