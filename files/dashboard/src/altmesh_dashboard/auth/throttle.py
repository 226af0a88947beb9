"""Login throttling: after LOGIN_MAX_FAILURES failed logins within LOGIN_WINDOW_SECONDS for one
username, or four times as many from one address, further attempts are refused until the window
moves on. Failures are stored in the database so every gunicorn worker sees them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from altmesh_dashboard.models import LoginFailure, utcnow

ADDRESS_FACTOR = 4  # one address may try several accounts, but not many


def seconds_until_allowed(
    session: Session, username: str, remote_addr: str, config: Mapping[str, Any]
) -> int:
    """0 when a login attempt may proceed, else how long the caller must wait."""
    window = dt.timedelta(seconds=config["LOGIN_WINDOW_SECONDS"])
    limit = config["LOGIN_MAX_FAILURES"]
    now = utcnow()
    since = now - window
    waits = []
    for column, value, allowed in (
        (LoginFailure.username, username, limit),
        (LoginFailure.remote_addr, remote_addr, limit * ADDRESS_FACTOR),
    ):
        count = (
            session.scalar(select(func.count()).where(column == value, LoginFailure.at > since))
            or 0
        )
        if count >= allowed:
            recent = session.scalars(
                select(LoginFailure.at)
                .where(column == value, LoginFailure.at > since)
                .order_by(LoginFailure.at.desc())
                .limit(allowed)
            ).all()
            # Allowed again once the oldest of the last `allowed` failures leaves the window.
            waits.append(int((recent[-1] + window - now).total_seconds()) + 1)
    return max(waits, default=0)


def record_failure(session: Session, username: str, remote_addr: str) -> None:
    session.add(LoginFailure(username=username[:64], remote_addr=remote_addr[:64]))


def forget_failures(session: Session, username: str, config: Mapping[str, Any]) -> None:
    """After a successful login, and to keep the table small, drop what no longer counts."""
    since = utcnow() - dt.timedelta(seconds=config["LOGIN_WINDOW_SECONDS"])
    session.execute(
        delete(LoginFailure).where(or_(LoginFailure.username == username, LoginFailure.at <= since))
    )
