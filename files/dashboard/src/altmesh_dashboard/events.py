"""Security events reported by relays, with filters."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from sqlalchemy import func, select

from altmesh_dashboard.auth.access import role_required
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import Relay, SecurityEvent, utcnow
from altmesh_dashboard.pagination import page_number
from altmesh_dashboard.payloads import SEVERITIES

bp = Blueprint("events", __name__, url_prefix="/events")

PAGE_SIZE = 50
PERIODS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1), "7d": dt.timedelta(days=7)}


@bp.get("/")
@role_required("viewer")
def index() -> str:
    db = get_session()
    query = select(SecurityEvent).join(Relay)
    relay = request.args.get("relay", "").strip()
    kind = request.args.get("kind", "").strip()
    severity = request.args.get("severity", "").strip()
    period = request.args.get("period", "").strip()
    if relay:
        query = query.where(Relay.name == relay)
    if kind:
        query = query.where(SecurityEvent.kind == kind)
    if severity in SEVERITIES:
        query = query.where(SecurityEvent.severity == severity)
    if period in PERIODS:
        query = query.where(SecurityEvent.occurred_at >= utcnow() - PERIODS[period])
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = page_number(request.args.get("page"), pages)
    events = db.scalars(
        query.order_by(SecurityEvent.occurred_at.desc(), SecurityEvent.id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    return render_template(
        "events.html",
        events=events,
        total=total,
        page=page,
        pages=pages,
        filters={"relay": relay, "kind": kind, "severity": severity, "period": period},
        relays=db.scalars(select(Relay.name).order_by(Relay.name)).all(),
        kinds=db.scalars(select(SecurityEvent.kind).distinct().order_by(SecurityEvent.kind)).all(),
        severities=SEVERITIES,
        periods=list(PERIODS),
    )
