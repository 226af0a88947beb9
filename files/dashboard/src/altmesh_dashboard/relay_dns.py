"""The bridge from relay registrations and heartbeats to the zone. The DNS helper's
`altmesh_dashboard.dns.publish` writes the records; this module calls it only when DNS is
configured, and a DNS failure never fails the relay's request (it is logged and counted)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from flask import current_app

from altmesh_dashboard.config import dns_is_configured
from altmesh_dashboard.metrics import FAILURES
from altmesh_dashboard.models import Relay

log = logging.getLogger(__name__)


def _publisher(name: str) -> Callable[[Relay], Any] | None:
    try:
        module = importlib.import_module("altmesh_dashboard.dns.publish")
    except ModuleNotFoundError:
        return None
    function = getattr(module, name, None)
    return function if callable(function) else None


def _call(function_name: str, relay: Relay) -> str:
    if not dns_is_configured(current_app.config):
        return "not configured"
    function = _publisher(function_name)
    if function is None:
        log.error(
            "DNS is configured but altmesh_dashboard.dns.publish.%s is missing", function_name
        )
        return "unavailable"
    try:
        function(relay)
    except Exception as exc:
        FAILURES.labels(kind="dns_publish").inc()
        log.warning("publishing DNS records of relay %s failed: %s", relay.name, exc)
        return f"failed: {exc}"
    return "published"


def publish(relay: Relay) -> str:
    """After a registration: the relay's AAAA, key TXT and DNS-SD SRV records."""
    return _call("publish_relay", relay)


def update_weight(relay: Relay) -> str:
    """After a heartbeat that changed the load: the SRV weight."""
    return _call("update_relay_weight", relay)


def unpublish(relay: Relay) -> str:
    """After an operator forgets a relay: remove the records publish() made."""
    return _call("unpublish_relay", relay)
