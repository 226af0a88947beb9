"""SRV weight follows liveness: a relay that stopped reporting (stale or down) has its SRV weight
set to 0 in the zone, and its next heartbeat gives it back the weight of its load.

Weight 0, not removal: RFC 2782 clients pick a weight-0 target only when no other is left, so a
silent relay stops attracting clients, yet stays findable with its key. If the dashboard itself
loses sight of the relays (its own network fails), every relay goes to weight 0 together and
clients still have the whole set, where withdrawing the records would leave them none.

Nothing arrives from a relay that stopped, so something else must notice: the CLI command
`flask --app altmesh_dashboard relays check-liveness` (the dashboard role runs it from a systemd
timer), and, opportunistically, API traffic: at most every LIVENESS_CHECK_EVERY_SECONDS per
process, after the answer has been sent."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import and_, or_, select

from altmesh_dashboard import relay_dns
from altmesh_dashboard.config import dns_is_configured
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import Relay, utcnow

log = logging.getLogger(__name__)

LIVENESS_CHECK_EVERY_SECONDS = 10.0
_last_check: dict[int, float] = {}  # per process: id(app) -> monotonic time of the last check
_last_check_lock = threading.Lock()  # the threads of a gthread worker share _last_check


@dataclass(frozen=True)
class LivenessResult:
    demoted: list[str]  # relays whose weight was set to 0 now
    failed: dict[str, str]  # relay -> why its DNS update failed


def due(app: Flask) -> bool:
    """Whether this process should run a check now (and, if so, mark it as run)."""
    if not dns_is_configured(app.config):
        return False
    now = time.monotonic()
    with _last_check_lock:
        last = _last_check.get(id(app))
        if last is not None and now - last < LIVENESS_CHECK_EVERY_SECONDS:
            return False
        _last_check[id(app)] = now
    return True


def silent_relays(now: dt.datetime, stale_after_seconds: int) -> list[Relay]:
    """Relays still published with a weight above 0 whose last heartbeat is older than the stale
    age (or that sent none since registering longer ago than that)."""
    cutoff = now - dt.timedelta(seconds=stale_after_seconds)
    return list(
        get_session().scalars(
            select(Relay)
            .where(Relay.published_weight.is_not(None), Relay.published_weight != 0)
            .where(
                or_(
                    Relay.last_heartbeat_at < cutoff,
                    and_(Relay.last_heartbeat_at.is_(None), Relay.registered_at < cutoff),
                )
            )
            .order_by(Relay.name)
        )
    )


def check_liveness(app: Flask) -> LivenessResult:
    """Set the SRV weight of every silent relay to 0 (in an app context)."""
    demoted: list[str] = []
    failed: dict[str, str] = {}
    for relay in silent_relays(utcnow(), app.config["RELAY_STALE_AFTER_SECONDS"]):
        result = relay_dns.update_weight(relay)
        if result == "published":
            demoted.append(relay.name)
            log.info("relay %s stopped reporting: SRV weight set to 0", relay.name)
        else:
            failed[relay.name] = result
    return LivenessResult(demoted, failed)


def run_in_background_context(app: Flask) -> None:
    """The opportunistic check, after a response: its own app context, never raising."""
    try:
        with app.app_context():
            check_liveness(app)
    except Exception:
        log.exception("opportunistic liveness check failed")
