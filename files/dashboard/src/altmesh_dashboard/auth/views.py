"""Log in and out."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
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
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from altmesh_dashboard import audit
from altmesh_dashboard.auth.access import (
    current_user,
    end_all_login_sessions,
    end_login_session,
    login_required,
    public,
    role_required,
    start_login_session,
)
from altmesh_dashboard.auth.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from altmesh_dashboard.auth.throttle import forget_failures, record_failure, seconds_until_allowed
from altmesh_dashboard.db import get_session
from altmesh_dashboard.forms import FlaskForm
from altmesh_dashboard.metrics import LOGINS
from altmesh_dashboard.models import ROLES, User, utcnow

bp = Blueprint("auth", __name__, url_prefix="/auth")
log = logging.getLogger(__name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site, never to another host, and only to a printable
    one: a CR or LF (`next=/%0d%0a...`) would otherwise end up in the Location header."""
    # Browsers read a backslash as "/", so "/\\evil.example" would leave the site too.
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
        and target.isascii()
    ):
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
        target = _safe_next(request.args.get("next"))  # before anything is committed
        audit.record_audit(user, "login", f"user:{user.username}", None, None, commit=False)
        start_login_session(user)
        db.commit()
        LOGINS.labels(result="success").inc()
        log.info("user %r logged in from %s", username, remote_addr)
        return redirect(target)
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form, error=None), status


class LogoutForm(FlaskForm):
    pass


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    end_login_session()
    get_session().commit()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


class NewUserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(min=1, max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    role = SelectField("Role", choices=list(ROLES), default="viewer")  # type: ignore[arg-type]  # plain values: see forms.py


class UserChangeForm(FlaskForm):
    role = SelectField("Role", choices=list(ROLES))  # type: ignore[arg-type]  # plain values: see forms.py
    disabled = BooleanField("Disabled")


@bp.route("/users", methods=["GET", "POST"])
@role_required("admin")
def users() -> ResponseReturnValue:
    """Admins list, create, re-role and disable users (the CLI does the same)."""
    db = get_session()
    form = NewUserForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            username = str(form.username.data).strip()
            problem = password_problem(str(form.password.data))
            if problem:
                form.password.errors = [problem]
            elif db.scalar(select(User).where(User.username == username)) is not None:
                form.username.errors = [f"user {username} already exists"]
            else:
                user = User(
                    username=username,
                    role=str(form.role.data),
                    password_hash=hash_password(str(form.password.data)),
                )
                db.add(user)
                db.flush()
                audit.record_audit(None, "user.create", f"user:{username}", None, user.audit_view())
                flash(f"User {username} created with role {user.role}.")
                return redirect(url_for("auth.users"))
        status = 400
    all_users = db.scalars(select(User).order_by(User.username)).all()
    change_forms = {}
    for user in all_users:
        change = UserChangeForm(prefix=f"u{user.id}")
        change.role.data = user.role
        change.disabled.data = user.disabled
        change_forms[user.id] = change
    return render_template(
        "users.html", form=form, users=all_users, change_forms=change_forms
    ), status


@bp.post("/users/<int:user_id>")
@role_required("admin")
def change_user(user_id: int) -> ResponseReturnValue:
    db = get_session()
    user = db.get(User, user_id)
    if user is None:
        abort(404, description=f"no user with id {user_id}")
    form = UserChangeForm(prefix=f"u{user.id}")
    if not form.validate_on_submit():
        abort(400, description="; ".join(f"{k}: {', '.join(v)}" for k, v in form.errors.items()))
    actor = current_user
    if (
        actor is not None
        and actor.id == user.id
        and (form.role.data != "admin" or form.disabled.data)
    ):
        abort(400, description="you cannot demote or disable yourself; ask another admin")
    before = user.audit_view()
    user.role = str(form.role.data)
    user.disabled = bool(form.disabled.data)
    if user.disabled or user.role != before["role"]:
        # A disabled user's logins end now, not merely while disabled: re-enabling must not
        # bring back a session taken before (a stolen cookie, a shared machine).
        end_all_login_sessions(user)
    if before != user.audit_view():
        audit.record_audit(None, "user.change", f"user:{user.username}", before, user.audit_view())
        flash(f"User {user.username} is now {user.role}{' (disabled)' if user.disabled else ''}.")
    return redirect(url_for("auth.users"))
