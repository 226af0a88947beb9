"""Relay status rules shared by pages, the API and metrics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

RelayState = Literal["up", "stale", "down"]


def relay_state(
    last_heartbeat_at: dt.datetime | None, now: dt.datetime, config: Mapping[str, Any]
) -> RelayState:
    """Up while heartbeats are fresh, stale after RELAY_STALE_AFTER_SECONDS, down after
    RELAY_DOWN_AFTER_SECONDS (or when none ever arrived)."""
    if last_heartbeat_at is None:
        return "down"
    age = (now - last_heartbeat_at).total_seconds()
    if age <= config["RELAY_STALE_AFTER_SECONDS"]:
        return "up"
    if age <= config["RELAY_DOWN_AFTER_SECONDS"]:
        return "stale"
    return "down"
