"""API tokens: `amr_` (a relay's) or `ams_` (a service's, scoped to one name) + 256 random bits.
Shown once at creation; only a SHA-256 is stored (a token is random enough that a slow KDF adds
nothing and would make every heartbeat slow)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from altmesh_dashboard.models import ApiToken, utcnow

TOKEN_PREFIX = "amr_"  # noqa: S105 - a public marker, not a secret
SERVICE_TOKEN_PREFIX = "ams_"  # noqa: S105 - a public marker, not a secret
PREFIXES = {"relay": TOKEN_PREFIX, "service": SERVICE_TOKEN_PREFIX}
MAX_TOKEN_LENGTH = 128


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, relay_name: str, created_by: str) -> tuple[ApiToken, str]:
    """Make a token for relay `relay_name`; returns the stored row and the token (never stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        kind="relay", relay_name=relay_name, token_hash=hash_token(token), created_by=created_by
    )
    session.add(row)
    session.flush()
    return row, token


def create_service_token(
    session: Session, service_name: str, created_by: str
) -> tuple[ApiToken, str]:
    """Make a token that may publish only `service_name` (absolute, e.g. `web.alt.`)."""
    token = SERVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        kind="service",
        service_name=service_name,
        token_hash=hash_token(token),
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row, token


def well_formed(presented: str, kind: str) -> bool:
    """Whether a presented token could be one of `kind` (checked before any database work)."""
    return (
        presented.startswith(PREFIXES[kind])
        and len(presented) <= MAX_TOKEN_LENGTH
        and presented.isascii()
    )


def find_active_token(session: Session, presented: str, kind: str = "relay") -> ApiToken | None:
    if not well_formed(presented, kind):
        return None
    wanted = hash_token(presented)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == wanted))
    # The lookup is by hash, so timing reveals nothing of the token; compare anyway.
    if (
        row is None
        or not hmac.compare_digest(row.token_hash, wanted)
        or row.revoked_at
        or row.kind != kind
    ):
        return None
    return row


def revoke_token(session: Session, token_id: int) -> ApiToken | None:
    row = session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
