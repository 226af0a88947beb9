"""Who is asking: the logged-in user, the decorators that guard views, and the rule that every
endpoint needs a login unless it is explicitly marked public or relay-token-authenticated."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

from flask import Flask, abort, current_app, g, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import delete
from werkzeug.local import LocalProxy

from altmesh_dashboard.models import ROLES, LoginSession, User, utcnow

F = TypeVar("F", bound=Callable[..., Any])

# How a view authenticates its caller. Unmarked views need a logged-in user.
AccessMark = Literal["public", "relay_token", "service_token", "metrics_token"]
ACCESS_ATTRIBUTE = "_altmesh_access"


def load_current_user() -> User | None:
    if "current_user" not in g:
        from altmesh_dashboard.db import get_session

        user: User | None = None
        user_id = session.get("user_id")
        if isinstance(user_id, int) and _login_session_is_live(user_id):
            candidate = get_session().get(User, user_id)
            # A changed role or password invalidates older sessions.
            if (
                candidate is not None
                and not candidate.disabled
                and session.get("auth_stamp") == auth_stamp(candidate)
            ):
                user = candidate
        g.current_user = user
    return cast(User | None, g.current_user)


def _hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _login_session_is_live(user_id: int) -> bool:
    """The cookie's login id names a row of this user that logout has not deleted and that is
    younger than SESSION_LIFETIME_SECONDS (a signed cookie alone is not enough)."""
    from altmesh_dashboard.db import get_session

    session_id = session.get("sid")
    if not isinstance(session_id, str):
        return False
    row = get_session().get(LoginSession, _hash_session_id(session_id))
    if row is None or row.user_id != user_id:
        return False
    lifetime = dt.timedelta(seconds=current_app.config["SESSION_LIFETIME_SECONDS"])
    return utcnow() - row.created_at <= lifetime


def start_login_session(user: User) -> None:
    """Begin a fresh session for `user` (nothing from before the login carries over), recorded
    on the server; expired logins are deleted on the way. The caller commits."""
    from altmesh_dashboard.db import get_session

    db = get_session()
    lifetime = dt.timedelta(seconds=current_app.config["SESSION_LIFETIME_SECONDS"])
    db.execute(delete(LoginSession).where(LoginSession.created_at < utcnow() - lifetime))
    session_id = secrets.token_urlsafe(32)
    db.add(LoginSession(id_hash=_hash_session_id(session_id), user_id=user.id))
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["auth_stamp"] = auth_stamp(user)
    session["sid"] = session_id


def end_all_login_sessions(user: User) -> None:
    """Delete every server-side login record of `user`: their cookies stop authenticating at
    once, and stay worthless if the user is enabled again later. The caller commits."""
    from altmesh_dashboard.db import get_session

    get_session().execute(delete(LoginSession).where(LoginSession.user_id == user.id))


def end_login_session() -> None:
    """Logout: delete the session's server-side record, so its cookie (or a copy of it) no
    longer authenticates anyone, and clear the cookie. The caller commits."""
    from altmesh_dashboard.db import get_session

    session_id = session.get("sid")
    if isinstance(session_id, str):
        get_session().execute(
            delete(LoginSession).where(LoginSession.id_hash == _hash_session_id(session_id))
        )
    session.clear()


current_user: User | None = cast(User | None, LocalProxy(load_current_user))


def auth_stamp(user: User) -> str:
    """Changes whenever the user's password or role changes, ending their existing sessions."""
    import hashlib

    return hashlib.sha256(f"{user.id}:{user.role}:{user.password_hash}".encode()).hexdigest()[:16]


def mark_access(mark: AccessMark) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        setattr(view, ACCESS_ATTRIBUTE, mark)
        return view

    return decorate


public = mark_access("public")


def access_of(view: Callable[..., Any] | None) -> str:
    return str(getattr(view, ACCESS_ATTRIBUTE, "login")) if view is not None else "login"


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _refuse_anonymous() -> ResponseReturnValue:
    if _wants_json():
        return jsonify(error="authentication required: log in first"), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if load_current_user() is None:
            return _refuse_anonymous()
        return view(*args, **kwargs)

    return cast(F, wrapped)


def role_required(role: str) -> Callable[[F], F]:
    """Allow users whose role is `role` or above (viewer < operator < admin)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    needed = ROLES.index(role)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = load_current_user()
            if user is None:
                return _refuse_anonymous()
            if ROLES.index(user.role) < needed:
                from altmesh_dashboard.metrics import FAILURES

                FAILURES.labels(kind="forbidden").inc()
                abort(403, description=f"this needs the {role} role; you are {user.role}")
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


def install_login_guard(app: Flask) -> None:
    """Second line of defence: a view someone forgot to decorate still needs a login."""

    @app.before_request
    def _require_login() -> ResponseReturnValue | None:
        if request.endpoint is None:
            return None  # 404 / 405: nothing to protect
        if request.endpoint == "static":
            return None
        view = app.view_functions.get(request.endpoint)
        if access_of(view) != "login":
            return None
        if load_current_user() is None:
            return _refuse_anonymous()
        return None
