"""Log in and out."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from altmesh_dashboard import audit
from altmesh_dashboard.auth.access import auth_stamp, login_required, public
from altmesh_dashboard.auth.passwords import hash_password, needs_rehash, verify_password
from altmesh_dashboard.auth.throttle import forget_failures, record_failure, seconds_until_allowed
from altmesh_dashboard.db import get_session
from altmesh_dashboard.metrics import LOGINS
from altmesh_dashboard.models import User, utcnow

bp = Blueprint("auth", __name__, url_prefix="/auth")
log = logging.getLogger(__name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site, never to another host."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("relays.index")


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    form = LoginForm()
    if request.method == "POST" and form.validate_on_submit():
        username = str(form.username.data).strip()
        password = str(form.password.data)
        remote_addr = request.remote_addr or "unknown"
        db = get_session()
        wait = seconds_until_allowed(db, username, remote_addr, current_app.config)
        if wait:
            LOGINS.labels(result="throttled").inc()
            log.warning("login throttled for user %r from %s", username, remote_addr)
            message = f"Too many failed logins. Try again in {wait} seconds."
            return render_template("login.html", form=form, error=message), 429
        user = db.scalar(select(User).where(User.username == username))
        valid = verify_password(user.password_hash if user else None, password)
        if not valid or user is None or user.disabled:
            record_failure(db, username, remote_addr)
            db.commit()
            LOGINS.labels(result="failure").inc()
            log.info("failed login for user %r from %s", username, remote_addr)
            return render_template(
                "login.html", form=form, error="Wrong username or password."
            ), 401
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.last_login_at = utcnow()
        forget_failures(db, username, current_app.config)
        audit.record_audit(user, "login", f"user:{user.username}", None, None, commit=False)
        db.commit()
        session.clear()  # a fresh session: nothing from before the login carries over
        session.permanent = True
        session["user_id"] = user.id
        session["auth_stamp"] = auth_stamp(user)
        LOGINS.labels(result="success").inc()
        log.info("user %r logged in from %s", username, remote_addr)
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form, error=None), status


class LogoutForm(FlaskForm):
    pass


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))
