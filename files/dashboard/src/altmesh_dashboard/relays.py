"""Relay status pages: the overview, one relay's detail and history, the mesh picture."""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from altmesh_dashboard import relay_dns
from altmesh_dashboard.audit import actor_name, record_audit
from altmesh_dashboard.auth.access import role_required
from altmesh_dashboard.db import get_session
from altmesh_dashboard.models import ApiToken, Heartbeat, Relay, SecurityEvent, utcnow
from altmesh_dashboard.payloads import PayloadError, relay_name
from altmesh_dashboard.status import relay_state
from altmesh_dashboard.tokens import create_token, revoke_token

bp = Blueprint("relays", __name__, url_prefix="/relays")

HISTORY_SHOWN = 100


class ForgetRelayForm(FlaskForm):
    """Only a CSRF token: the action is in the URL."""


@bp.get("/")
@role_required("viewer")
def index() -> str:
    now = utcnow()
    relays = get_session().scalars(select(Relay).order_by(Relay.name)).all()
    rows = [
        (relay, relay_state(relay.last_heartbeat_at, now, current_app.config)) for relay in relays
    ]
    counts = {state: sum(1 for _, s in rows if s == state) for state in ("up", "stale", "down")}
    return render_template("relays.html", rows=rows, counts=counts, now=now)


@bp.get("/<name>")
@role_required("viewer")
def detail(name: str) -> str:
    db = get_session()
    relay = db.scalar(select(Relay).where(Relay.name == name))
    if relay is None:
        abort(404, description=f"no relay named {name!r}")
    now = utcnow()
    history = db.scalars(
        select(Heartbeat)
        .where(Heartbeat.relay_id == relay.id)
        .order_by(Heartbeat.id.desc())
        .limit(HISTORY_SHOWN)
    ).all()
    events = db.scalars(
        select(SecurityEvent)
        .where(SecurityEvent.relay_id == relay.id)
        .order_by(SecurityEvent.occurred_at.desc())
        .limit(20)
    ).all()
    return render_template(
        "relay_detail.html",
        relay=relay,
        state=relay_state(relay.last_heartbeat_at, now, current_app.config),
        history=history,
        load_points=_load_polyline(list(reversed(history))),
        events=events,
        form=ForgetRelayForm(),
    )


def _load_polyline(history: list[Heartbeat], width: int = 600, height: int = 80) -> str:
    if len(history) < 2:
        return ""
    step = width / (len(history) - 1)
    return " ".join(
        f"{index * step:.1f},{height - beat.load * height:.1f}"
        for index, beat in enumerate(history)
    )


@bp.post("/<name>/forget")
@role_required("operator")
def forget(name: str) -> ResponseReturnValue:
    """Remove a decommissioned relay and its history (its tokens stay until revoked)."""
    form = ForgetRelayForm()
    if not form.validate_on_submit():
        abort(400, description="the form expired; reload the page and try again")
    db = get_session()
    relay = db.scalar(select(Relay).where(Relay.name == name))
    if relay is None:
        abort(404, description=f"no relay named {name!r}")
    before = relay.audit_view()
    db.delete(relay)
    record_audit(None, "relay.forget", f"relay:{name}", before, None, commit=False)
    db.commit()
    flash(f"Relay {name} forgotten.")
    dns_result = relay_dns.unpublish(relay)
    if dns_result.startswith(("failed", "unavailable")):
        flash(f"Its DNS records could not be removed ({dns_result}); delete them on the DNS page.")
    return redirect(url_for("relays.index"))


@dataclass(frozen=True)
class MeshNode:
    name: str
    state: str
    x: float
    y: float


@dataclass(frozen=True)
class MeshEdge:
    source: MeshNode
    target: MeshNode
    state: str
    rtt_ms: float | None
    colour: str
    label: str


def link_colour(state: str, rtt_ms: float | None) -> str:
    """Down: red; connecting: grey; up: green below 50 ms, amber below 150 ms, orange above."""
    if state == "down":
        return "#c0392b"
    if state != "up":
        return "#7f8c8d"
    if rtt_ms is None or rtt_ms < 50:
        return "#27ae60"
    if rtt_ms < 150:
        return "#d4ac0d"
    return "#e67e22"


def mesh_layout(size: int = 640) -> tuple[list[MeshNode], list[MeshEdge]]:
    now = utcnow()
    relays = get_session().scalars(select(Relay).order_by(Relay.name)).all()
    centre = size / 2
    radius = size / 2 - 90
    nodes: dict[str, MeshNode] = {}
    for index, relay in enumerate(relays):
        angle = 2 * math.pi * index / max(len(relays), 1) - math.pi / 2
        nodes[relay.name] = MeshNode(
            relay.name,
            relay_state(relay.last_heartbeat_at, now, current_app.config),
            round(centre + radius * math.cos(angle), 1),
            round(centre + radius * math.sin(angle), 1),
        )
    edges: list[MeshEdge] = []
    for relay in relays:
        for link in relay.links:
            if link.peer_name not in nodes:
                continue
            rtt = f"{link.rtt_ms:.1f} ms" if link.rtt_ms is not None else "no RTT"
            edges.append(
                MeshEdge(
                    nodes[relay.name],
                    nodes[link.peer_name],
                    link.state,
                    link.rtt_ms,
                    link_colour(link.state, link.rtt_ms),
                    f"{relay.name} → {link.peer_name}: {link.state}, {rtt}",
                )
            )
    return list(nodes.values()), edges


@bp.get("/mesh")
@role_required("viewer")
def mesh() -> str:
    nodes, edges = mesh_layout()
    return render_template("mesh.html", nodes=nodes, edges=edges)


@bp.get("/mesh.svg")
@role_required("viewer")
def mesh_svg() -> Response:
    nodes, edges = mesh_layout()
    svg = render_template("mesh.svg", nodes=nodes, edges=edges, size=640)
    return Response(svg, mimetype="image/svg+xml")


class NewTokenForm(FlaskForm):
    relay = StringField("Relay name", validators=[DataRequired(), Length(max=63)])


class RevokeTokenForm(FlaskForm):
    """Only a CSRF token: the token id is in the URL."""


@bp.route("/tokens", methods=["GET", "POST"])
@role_required("admin")
def tokens() -> ResponseReturnValue:
    """Relay API tokens: list, create (the token is shown on this one answer only), revoke."""
    db = get_session()
    form = NewTokenForm()
    new_token: str | None = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                name = relay_name(str(form.relay.data).strip(), "relay")
            except PayloadError as error:
                form.relay.errors = [error.problem]
                status = 400
            else:
                row, new_token = create_token(db, name, actor_name(None))
                record_audit(None, "token.create", f"relay:{name}", None, row.audit_view())
        else:
            status = 400
    rows = db.scalars(select(ApiToken).order_by(ApiToken.id.desc())).all()
    return render_template(
        "tokens.html",
        form=form,
        rows=rows,
        new_token=new_token,
        new_relay=form.relay.data if new_token else None,
        revoke_form=RevokeTokenForm(),
    ), status


@bp.post("/tokens/<int:token_id>/revoke")
@role_required("admin")
def revoke(token_id: int) -> ResponseReturnValue:
    if not RevokeTokenForm().validate_on_submit():
        abort(400, description="the form expired; reload the page and try again")
    db = get_session()
    row = db.get(ApiToken, token_id)
    if row is None:
        abort(404, description=f"no token with id {token_id}")
    if row.revoked_at is None:
        before = row.audit_view()
        revoke_token(db, token_id)
        record_audit(None, "token.revoke", f"relay:{row.relay_name}", before, row.audit_view())
        flash(f"Token {token_id} of relay {row.relay_name} revoked.")
    return redirect(url_for("relays.tokens"))
