"""The dashboard's tables, as SQLAlchemy 2 typed mappings. Timestamps are timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("viewer", "operator", "admin")  # each role may do everything the ones before it may


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores aware UTC datetimes; SQLite forgets the zone, so it is put back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if not isinstance(value, dt.datetime):
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime,
        dict[str, Any]: JSON,
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    def audit_view(self) -> dict[str, Any]:
        """What the audit log shows of a user: never the password hash."""
        return {"username": self.username, "role": self.role, "disabled": self.disabled}


class LoginSession(Base):
    """A login, so that it can be ended on the server: the session cookie carries a random id,
    stored here only as its SHA-256 (like API tokens), and a request is authenticated only while
    the row exists. Logout deletes it, so a cookie copied before logout is worthless after it."""

    __tablename__ = "login_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """One failed login, kept for the throttling window (shared by every gunicorn worker)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_remote_at", "remote_addr", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Relay(Base):
    __tablename__ = "relays"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    public_key: Mapped[str] = mapped_column(String(64))  # base64 of the 32-byte X25519 key
    address: Mapped[str] = mapped_column(String(45))  # the relay's ULA IPv6 address
    endpoints: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    registered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    load: Mapped[float | None] = mapped_column(Float, default=None)
    active_streams: Mapped[int | None] = mapped_column(Integer, default=None)
    bytes_in: Mapped[int | None] = mapped_column(BigInteger, default=None)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger, default=None)
    version: Mapped[str | None] = mapped_column(String(64), default=None)
    # The SRV weight last published in the zone and when: stored here, not in a worker's memory,
    # so every gunicorn worker (and the app after a restart) knows whether a heartbeat changes it.
    published_weight: Mapped[int | None] = mapped_column(Integer, default=None)
    weight_published_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # SHA-256 of the sorted `attached` list of the last heartbeat that changed it: a heartbeat
    # with the same list (the usual case) costs no write to `attachments`.
    attached_digest: Mapped[str | None] = mapped_column(String(64), default=None)

    # The relay's links to its mesh peers as its latest heartbeat reported them, sorted by peer:
    # [{"peer": "r2", "state": "up", "rtt_ms": 3.2}, ...]. One column, not a table, so a
    # heartbeat is one UPDATE of this row however many links it reports.
    links: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    def audit_view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "public_key": self.public_key,
            "address": self.address,
            "endpoints": self.endpoints,
        }


class Attachment(Base):
    """A node (client or service) attached to a relay, by its overlay address, as the relay's
    latest heartbeat listed it (`attached`). The Services page finds a service's relay here."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_address", "address"),)

    relay_id: Mapped[int] = mapped_column(
        ForeignKey("relays.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(45), primary_key=True)


class Service(Base):
    """A service that published its name through the API (`POST /api/v1/services/register`)
    with a service token: its AAAA and key TXT records are in the zone."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)  # absolute, e.g. web.alt.
    public_key: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(45))
    registered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def audit_view(self) -> dict[str, Any]:
        return {"name": self.name, "public_key": self.public_key, "address": self.address}


class HealthProbe(Base):
    """One row that /health rewrites now and then, to prove the database takes writes."""

    __tablename__ = "health_probe"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    written_at: Mapped[float] = mapped_column(Float)


class Heartbeat(Base):
    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_relay_at", "relay_id", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    relay_id: Mapped[int] = mapped_column(ForeignKey("relays.id", ondelete="CASCADE"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    load: Mapped[float] = mapped_column(Float)
    active_streams: Mapped[int] = mapped_column(Integer)
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[str] = mapped_column(String(64))
    links: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class SecurityEvent(Base):
    __tablename__ = "security_events"
    __table_args__ = (
        Index("ix_security_events_at", "occurred_at"),
        Index("ix_security_events_relay_kind", "relay_id", "kind"),
        # A relay re-sends a batch it is not sure arrived: (relay, event id) is stored once.
        UniqueConstraint("relay_id", "event_id", name="uq_security_events_relay_event_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    relay_id: Mapped[int] = mapped_column(ForeignKey("relays.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))  # the relay's id of the event
    occurred_at: Mapped[dt.datetime] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    peer: Mapped[str | None] = mapped_column(String(128), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    relay: Mapped[Relay] = relationship()


TOKEN_KINDS = ("relay", "service")


class ApiToken(Base):
    """An API token: a relay's (kind "relay", `relay_name`) or a service's, scoped to one name
    of the zone (kind "service", `service_name`). Only a SHA-256 of the token is kept: tokens are
    256 random bits, so a fast hash is as safe as a slow KDF and keeps heartbeats cheap."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="relay", server_default="relay")
    relay_name: Mapped[str | None] = mapped_column(String(63), index=True, default=None)
    service_name: Mapped[str | None] = mapped_column(String(253), default=None)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    @property
    def subject(self) -> str:
        """What the token is for, as the audit log and the pages name it."""
        if self.kind == "service":
            return f"service:{self.service_name}"
        return f"relay:{self.relay_name}"

    def audit_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"id": self.id, "kind": self.kind}
        if self.kind == "service":
            view["service_name"] = self.service_name
        else:
            view["relay_name"] = self.relay_name
        view["revoked"] = self.revoked_at is not None
        return view


class AuditEntry(Base):
    """Append-only: the app inserts audit entries and never updates or deletes them."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
