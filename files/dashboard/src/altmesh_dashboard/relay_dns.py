"""The bridge from relay registrations, heartbeats and liveness checks to the zone:
`altmesh_dashboard.dns.publish` writes the records; this module calls it only when DNS is
configured, and a DNS failure never fails the relay's request (it is logged and counted)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from flask import current_app

from altmesh_dashboard.config import dns_is_configured
from altmesh_dashboard.dns import publish as publisher
from altmesh_dashboard.metrics import FAILURES
from altmesh_dashboard.models import Relay

log = logging.getLogger(__name__)


def _call(function: Callable[[Relay], Any], relay: Relay) -> str:
    if not dns_is_configured(current_app.config):
        return "not configured"
    try:
        function(relay)
    except Exception as exc:
        FAILURES.labels(kind="dns_publish").inc()
        log.warning("publishing DNS records of relay %s failed: %s", relay.name, exc)
        return f"failed: {exc}"
    return "published"


def publish(relay: Relay) -> str:
    """After a registration: the relay's AAAA, key TXT and DNS-SD SRV records."""
    return _call(publisher.publish_relay, relay)


def update_weight(relay: Relay) -> str:
    """After a heartbeat that changed the weight, or when the relay fell silent: the SRV weight
    (0 while the relay is not up, else the weight of its load)."""
    return _call(publisher.update_relay_weight, relay)


def unpublish(relay: Relay) -> str:
    """After an operator forgets a relay: remove the records publish() made."""
    return _call(publisher.unpublish_relay, relay)


def weight_needs_update(
    published_weight: int | None,
    published_at: dt.datetime | None,
    load: float,
    now: dt.datetime,
) -> bool:
    """After a heartbeat (the relay is up): whether its SRV weight must be sent or re-checked,
    judged from its row alone, so an unchanged weight costs no DNS traffic and no extra read."""
    if not dns_is_configured(current_app.config):
        return False
    if published_weight != publisher.weight_for_load(load) or published_at is None:
        return True
    age = (now - published_at).total_seconds()
    return not 0 <= age <= publisher.WEIGHT_RECHECK_SECONDS
