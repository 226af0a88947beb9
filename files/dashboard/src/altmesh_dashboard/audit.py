"""The audit log: every change made through the dashboard, append-only. `record_audit` is the one
way to write it; the blueprint only reads it (it has no route that changes anything)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, has_request_context, render_template, request
from sqlalchemy import func, select

from altmesh_dashboard.auth.access import load_current_user, role_required
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import AuditEntry, User
from altmesh_dashboard.pagination import page_number

bp = Blueprint("audit", __name__, url_prefix="/audit")

PAGE_SIZE = 50


def actor_name(actor: User | str | None) -> str:
    if isinstance(actor, User):
        return actor.username
    if isinstance(actor, str):
        return actor
    if has_request_context():
        user = load_current_user()
        if user is not None:
            return user.username
    return "system"


def record_audit(
    actor: User | str | None,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    commit: bool = True,
) -> AuditEntry:
    """Append an audit entry. `actor` is a User, a name such as "relay:r1" or "cli:root", or None
    for the logged-in user. With commit=True (the default) the session is committed, so the entry
    and the caller's pending changes land together; pass commit=False to commit yourself."""
    entry = AuditEntry(
        actor=actor_name(actor), action=action, target=target, before=before, after=after
    )
    session = get_session()
    session.add(entry)
    if commit:
        session.commit()
    return entry


@bp.get("/")
@role_required("viewer")
def index() -> str:
    session = get_session()
    query = select(AuditEntry)
    actor = request.args.get("actor", "").strip()
    action = request.args.get("action", "").strip()
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = page_number(request.args.get("page"), pages)
    entries = session.scalars(
        query.order_by(AuditEntry.id.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    ).all()
    actions = session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
    return render_template(
        "audit.html",
        entries=entries,
        page=page,
        pages=pages,
        actor=actor,
        action=action,
        actions=list(actions),
    )
