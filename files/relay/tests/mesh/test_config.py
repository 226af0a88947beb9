"""RoutingConfig: defaults that hang together, and a clear error naming the field otherwise."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from altmesh.mesh import RoutingConfig


def test_the_defaults_are_valid() -> None:
    config = RoutingConfig()
    assert config.refresh_interval < config.lifetime <= config.max_lifetime <= 65535
    assert config.min_origination_interval <= config.max_origination_interval


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hop_cost": 0}, "routing: hop_cost: 0 is outside 1..10000"),
        ({"hop_cost": 2.5}, "routing: hop_cost: must be an integer"),
        ({"rtt_smoothing": 0.0}, "routing: rtt_smoothing: 0.0 is outside"),
        ({"initial_rtt": float("nan")}, "routing: initial_rtt: must be finite"),
        ({"min_origination_interval": 5.0, "max_origination_interval": 1.0}, "max_origination"),
        ({"lifetime": 70_000}, "routing: lifetime: 70000 is outside 60..65535"),
        ({"max_lifetime": 100}, "routing: max_lifetime: 100 is outside 3600..65535"),
        ({"refresh_interval": 3600.0}, "routing: refresh_interval: 3600.0 is outside"),
        ({"spf_max_wait": 0.01}, "routing: spf_max_wait: 0.01 is outside"),
        ({"max_origins": 0}, "routing: max_origins: 0 is outside"),
        ({"max_destinations_per_origin": 2_000_000}, "max_destinations_per_origin"),
        ({"max_database_bytes": 1000}, "routing: max_database_bytes: 1000 is outside"),
        ({"flood_pacing": True}, "routing: flood_pacing: must be a number"),
        ({"prefix": ipaddress.IPv6Network("fd00::/8")}, "routing: prefix: must be an IPv6 /48"),
    ],
)
def test_an_invalid_value_is_refused_naming_the_field(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(RoutingConfig(), **changes)  # type: ignore[arg-type]
