"""Pages of the DNS area: the zone's records, add / edit / delete forms, the server's status.

Viewers may look; operators and admins may change. Each change is one TSIG-signed update; the
audit log gets who, what, before and after; `dns_updates_total{result}` counts the outcomes."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import Length

from altmesh_dashboard.audit import record_audit
from altmesh_dashboard.auth.access import current_user, role_required
from altmesh_dashboard.config import dns_is_configured
from altmesh_dashboard.dns import bp
from altmesh_dashboard.dns.zone import (
    EDITABLE_TYPES,
    MAX_TTL,
    DnsError,
    Record,
    RecordInvalid,
    ZoneClient,
    ZoneSettings,
    server_status,
    validate_record,
)
from altmesh_dashboard.forms import FlaskForm
from altmesh_dashboard.metrics import DNS_UPDATES
from altmesh_dashboard.models import ROLES

DEFAULT_TTL = 300


class RecordForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=255)], default="")
    ttl = StringField("TTL (seconds)", validators=[Length(max=12)], default=str(DEFAULT_TTL))
    type = SelectField("Type", choices=list(EDITABLE_TYPES), default="A", validate_choice=False)  # type: ignore[arg-type]  # plain values: see forms.py
    rdata = StringField("Data", validators=[Length(max=4000)], default="")


class EditRecordForm(RecordForm):
    old_name = HiddenField()
    old_type = HiddenField()
    old_rdata = HiddenField()


class DeleteRecordForm(FlaskForm):
    name = HiddenField()
    type = HiddenField()
    rdata = HiddenField()


def _client() -> ZoneClient:
    if not dns_is_configured(current_app.config):
        abort(
            503,
            description="DNS management is not configured: set DNS_SERVER, DNS_TSIG_KEY_NAME and "
            "DNS_TSIG_SECRET (see docs/dashboard-dns.md)",
        )
    return ZoneClient.from_config(current_app.config)


def _can_edit() -> bool:
    user = current_user
    return user is not None and ROLES.index(user.role) >= ROLES.index("operator")


def _apply_errors(form: FlaskForm, errors: dict[str, str]) -> None:
    for field_name, message in errors.items():
        field = getattr(form, field_name, None)
        if field is not None:
            field.errors = [*field.errors, message]
        else:
            form.form_errors.append(f"{field_name}: {message}")


def _record_from(form: RecordForm, origin: Any) -> Record:
    return validate_record(
        origin,
        str(form.name.data or ""),
        str(form.ttl.data or ""),
        str(form.type.data or ""),
        str(form.rdata.data or ""),
    )


def _old_record(name: str, rdtype: str, rdata: str, origin: Any) -> Record:
    """The record a hidden field names; tampered or stale values are a 400, not a crash."""
    try:
        return validate_record(origin, name, DEFAULT_TTL, rdtype, rdata)
    except RecordInvalid as err:
        abort(400, description=f"the record to change is not valid: {err}")


def _count(result: str) -> None:
    DNS_UPDATES.labels(result=result).inc()


def _audit_target(record: Record) -> str:
    return f"dns:{record.name.to_text()} {record.type_text}"


@bp.get("/")
@role_required("viewer")
def zone() -> ResponseReturnValue:
    client = _client()
    try:
        contents = client.read_zone()
    except DnsError as err:
        return render_template("dns/zone.html", error=err.message, contents=None), 502
    return render_template(
        "dns/zone.html",
        error=None,
        contents=contents,
        origin=client.origin,
        can_edit=_can_edit(),
        delete_form=DeleteRecordForm(),
    )


@bp.route("/records/new", methods=["GET", "POST"])
@role_required("operator")
def add_record() -> ResponseReturnValue:
    client = _client()
    form = RecordForm()
    if request.method == "GET" and request.args.get("name"):
        form.name.data = request.args["name"]
    if form.validate_on_submit():
        try:
            record = _record_from(form, client.origin)
            client.add(record)
        except RecordInvalid as err:
            _apply_errors(form, err.errors)
            _count("invalid")
        except DnsError as err:
            form.form_errors.append(err.message)
            _count(err.kind)
        else:
            _count("success")
            record_audit(None, "dns.add", _audit_target(record), None, record.audit_view())
            flash(f"Added {record.name} {record.ttl} {record.type_text} {record.rdata_text}")
            return redirect(url_for("dns.zone"))
    status = 400 if request.method == "POST" else 200
    return render_template(
        "dns/record_form.html", form=form, mode="add", zone=client.origin, max_ttl=MAX_TTL
    ), status


@bp.route("/records/edit", methods=["GET", "POST"])
@role_required("operator")
def edit_record() -> ResponseReturnValue:
    client = _client()
    form = EditRecordForm()
    if request.method == "GET":
        old = _old_record(
            request.args.get("name", ""),
            request.args.get("type", ""),
            request.args.get("rdata", ""),
            client.origin,
        )
        try:
            current = client.lookup(old.name, old.rdtype)
        except DnsError as err:
            return render_template("error.html", code=502, message=err.message), 502
        match = next((r for r in current if r.rdata == old.rdata), None)
        if match is None:
            flash(f"{old.name} {old.type_text} {old.rdata_text} is no longer in the zone.")
            return redirect(url_for("dns.zone"))
        form.name.data = match.relative_name(client.origin)
        form.ttl.data = str(match.ttl)
        form.type.data = match.type_text
        form.rdata.data = match.rdata_text
        form.old_name.data = match.name.to_text()
        form.old_type.data = match.type_text
        form.old_rdata.data = match.rdata_text
    elif form.validate_on_submit():
        old = _old_record(
            str(form.old_name.data or ""),
            str(form.old_type.data or ""),
            str(form.old_rdata.data or ""),
            client.origin,
        )
        try:
            new = _record_from(form, client.origin)
            current = client.lookup(old.name, old.rdtype)
            before = next((r for r in current if r.rdata == old.rdata), old)
            client.change(before, new)
        except RecordInvalid as err:
            _apply_errors(form, err.errors)
            _count("invalid")
        except DnsError as err:
            form.form_errors.append(err.message)
            _count(err.kind)
        else:
            _count("success")
            record_audit(
                None, "dns.change", _audit_target(before), before.audit_view(), new.audit_view()
            )
            flash(
                f"Changed {before.name} {before.type_text} {before.rdata_text} → {new.rdata_text}"
            )
            return redirect(url_for("dns.zone"))
    status = 400 if request.method == "POST" else 200
    return render_template(
        "dns/record_form.html", form=form, mode="edit", zone=client.origin, max_ttl=MAX_TTL
    ), status


@bp.post("/records/delete")
@role_required("operator")
def delete_record() -> ResponseReturnValue:
    client = _client()
    form = DeleteRecordForm()
    if not form.validate_on_submit():
        abort(400, description="the delete form was incomplete; reload the zone page and retry")
    old = _old_record(
        str(form.name.data or ""),
        str(form.type.data or ""),
        str(form.rdata.data or ""),
        client.origin,
    )
    try:
        current = client.lookup(old.name, old.rdtype)
        before = next((r for r in current if r.rdata == old.rdata), old)
        client.delete(before)
    except RecordInvalid as err:
        _count("invalid")
        flash("Not deleted: " + "; ".join(err.errors.values()))
        return redirect(url_for("dns.zone"))
    except DnsError as err:
        _count(err.kind)
        flash(f"Not deleted: {err.message}")
        return redirect(url_for("dns.zone"))
    _count("success")
    record_audit(None, "dns.delete", _audit_target(before), before.audit_view(), None)
    flash(f"Deleted {before.name} {before.type_text} {before.rdata_text}")
    return redirect(url_for("dns.zone"))


@bp.get("/status")
@role_required("viewer")
def status() -> ResponseReturnValue:
    settings = ZoneSettings.from_config(current_app.config)
    try:
        facts = server_status(settings)
    except DnsError as err:
        return render_template("dns/status.html", error=err.message, facts=None), 502
    return render_template("dns/status.html", error=None, facts=facts, settings=settings)
