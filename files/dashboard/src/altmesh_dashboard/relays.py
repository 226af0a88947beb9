"""Relay status pages: the overview, one relay's detail and history, the mesh picture."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

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
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from altmesh_dashboard import relay_dns
from altmesh_dashboard.audit import actor_name, record_audit
from altmesh_dashboard.auth.access import role_required
from altmesh_dashboard.db import get_session
from altmesh_dashboard.forms import FlaskForm
from altmesh_dashboard.models import (
    TOKEN_KINDS,
    ApiToken,
    Heartbeat,
    Relay,
    SecurityEvent,
    utcnow,
)
from altmesh_dashboard.payloads import PayloadError, relay_name, service_name
from altmesh_dashboard.status import RelayState, relay_state
from altmesh_dashboard.tokens import create_service_token, create_token, revoke_token

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
        chart=load_chart(list(reversed(history))),
        events=events,
        form=ForgetRelayForm(),
    )


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class LoadChart:
    """The relay page's load chart: load (0-100 %) over heartbeat time (UTC), with axes."""

    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    points: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]


def load_chart(history: list[Heartbeat], width: int = 640, height: int = 200) -> LoadChart | None:
    """Oldest heartbeat first; None with fewer than two (nothing to draw a line through)."""
    if len(history) < 2:
        return None
    left, right, top, bottom = 56, 36, 12, 40
    plot_width, plot_height = width - left - right, height - top - bottom
    start = history[0].received_at
    span = max((history[-1].received_at - start).total_seconds(), 1e-6)

    def x_of(beat: Heartbeat) -> float:
        return left + (beat.received_at - start).total_seconds() / span * plot_width

    points = " ".join(
        f"{x_of(beat):.1f},{top + plot_height - beat.load * plot_height:.1f}" for beat in history
    )
    y_ticks = [
        Tick(round(top + plot_height - fraction * plot_height, 1), f"{fraction:.0%}")
        for fraction in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    x_ticks = []
    for index in range(5):
        moment = start + (history[-1].received_at - start) * (index / 4)
        x_ticks.append(Tick(round(left + plot_width * index / 4, 1), time_label(moment, span)))
    return LoadChart(width, height, left, top, plot_width, plot_height, points, y_ticks, x_ticks)


def time_label(moment: dt.datetime, span_seconds: float) -> str:
    """A time-axis label (UTC) precise enough that the chart's five ticks, a quarter of the span
    apart, read differently: tenths of seconds under 4 s, the date from a day on."""
    if span_seconds >= 86400:
        return f"{moment:%m-%d %H:%M}"
    if span_seconds < 4:
        return f"{moment:%H:%M:%S}.{moment.microsecond // 100000}"
    return f"{moment:%H:%M:%S}"


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
    state: str  # up, stale, down; "unknown" for a peer a relay reports that is not registered
    x: float
    y: float


@dataclass(frozen=True)
class MeshEdge:
    """One relay's view of one link, drawn from the reporting relay to the middle of the line:
    the two halves of a line are the two ends' reports, so a link one end sees as up and the
    other as down shows both."""

    source: MeshNode
    target: MeshNode
    state: str
    rtt_ms: float | None
    colour: str
    label: str

    @property
    def mid_x(self) -> float:
        return round((self.source.x + self.target.x) / 2, 1)

    @property
    def mid_y(self) -> float:
        return round((self.source.y + self.target.y) / 2, 1)


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


@dataclass(frozen=True)
class MeshPicture:
    nodes: list[MeshNode]
    edges: list[MeshEdge]  # every link a relay reports: the half line from the reporting end
    # The other half of a line whose far end does not report the link (not registered, silent,
    # or it does not see the link): drawn thin and grey, so no half line ends in mid-air.
    unreported: list[MeshEdge]


UNREPORTED_COLOUR = "#bdc3c7"


def mesh_layout(size: int = 640) -> MeshPicture:
    """Relays on a circle, and every link their latest heartbeats report (a peer that is not a
    registered relay is drawn too, as an "unknown" node, so no reported link goes missing)."""
    now = utcnow()
    relays = get_session().scalars(select(Relay).order_by(Relay.name)).all()
    states: dict[str, RelayState | Literal["unknown"]] = {
        relay.name: relay_state(relay.last_heartbeat_at, now, current_app.config)
        for relay in relays
    }
    for relay in relays:
        for link in relay.links or []:
            states.setdefault(str(link["peer"]), "unknown")
    centre = size / 2
    radius = size / 2 - 90
    nodes: dict[str, MeshNode] = {}
    for index, name in enumerate(sorted(states)):
        angle = 2 * math.pi * index / max(len(states), 1) - math.pi / 2
        nodes[name] = MeshNode(
            name,
            states[name],
            round(centre + radius * math.cos(angle), 1),
            round(centre + radius * math.sin(angle), 1),
        )
    edges: list[MeshEdge] = []
    for relay in relays:
        for link in relay.links or []:
            peer, state, rtt_ms = str(link["peer"]), str(link["state"]), link.get("rtt_ms")
            rtt = f"{rtt_ms:.1f} ms" if rtt_ms is not None else "no RTT"
            edges.append(
                MeshEdge(
                    nodes[relay.name],
                    nodes[peer],
                    state,
                    rtt_ms,
                    link_colour(state, rtt_ms),
                    f"{relay.name} → {peer}: {state}, {rtt} (as {relay.name} reports it)",
                )
            )
    reported = {(edge.source.name, edge.target.name) for edge in edges}
    unreported = [
        MeshEdge(
            edge.target,
            edge.source,
            "unreported",
            None,
            UNREPORTED_COLOUR,
            f"{edge.target.name} does not report a link to {edge.source.name}",
        )
        for edge in edges
        if (edge.target.name, edge.source.name) not in reported
    ]
    return MeshPicture(list(nodes.values()), edges, unreported)


@bp.get("/mesh")
@role_required("viewer")
def mesh() -> str:
    return render_template("mesh.html", picture=mesh_layout(), size=640)


@bp.get("/mesh.svg")
@role_required("viewer")
def mesh_svg() -> Response:
    svg = render_template("mesh.svg", picture=mesh_layout(), size=640)
    return Response(svg, mimetype="image/svg+xml")


class NewTokenForm(FlaskForm):
    kind = SelectField("For", choices=list(TOKEN_KINDS), default="relay")  # type: ignore[arg-type]  # plain values: see forms.py
    name = StringField("Name", validators=[DataRequired(), Length(max=253)])


class RevokeTokenForm(FlaskForm):
    """Only a CSRF token: the token id is in the URL."""


def _new_token(kind: str, typed: str) -> tuple[ApiToken, str]:
    """Make a relay token (`typed` is the relay's name) or a service token (`typed` is a name of
    the zone, such as web.alt); ValueError naming the problem. The same rules as the CLI's
    `tokens create [--service]`."""
    db = get_session()
    if kind == "service":
        name = service_name(typed, str(current_app.config["DNS_ZONE"]))
        return create_service_token(db, name, actor_name(None))
    try:
        relay = relay_name(typed, "name")
    except PayloadError as error:
        raise ValueError(error.problem) from None
    return create_token(db, relay, actor_name(None))


@bp.route("/tokens", methods=["GET", "POST"])
@role_required("admin")
def tokens() -> ResponseReturnValue:
    """API tokens of relays and services: list, create (the token is shown on this one answer
    only), revoke."""
    db = get_session()
    form = NewTokenForm()
    new_token: str | None = None
    new_row: ApiToken | None = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                new_row, new_token = _new_token(str(form.kind.data), str(form.name.data).strip())
            except ValueError as error:
                form.name.errors = [str(error)]
                status = 400
            else:
                record_audit(None, "token.create", new_row.subject, None, new_row.audit_view())
                form.name.data = ""  # made: the form is ready for the next one
        else:
            status = 400
    rows = db.scalars(select(ApiToken).order_by(ApiToken.id.desc())).all()
    return render_template(
        "tokens.html",
        form=form,
        rows=rows,
        new_token=new_token,
        new_row=new_row,
        zone=current_app.config["DNS_ZONE"],
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
        record_audit(None, "token.revoke", row.subject, before, row.audit_view())
        flash(f"Token {token_id} of {row.subject.replace(':', ' ', 1)} revoked.")
    return redirect(url_for("relays.tokens"))
