"""Services that publish their name through the API with a service token: the rules (the name
is the token's, it is no relay's, the zone can serve it) and the bookkeeping (the `services`
table, the audit log) around `dns.publish.publish_service` / `withdraw_service`."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from altmesh_dashboard.audit import record_audit
from altmesh_dashboard.config import dns_is_configured
from altmesh_dashboard.db import get_session
from altmesh_dashboard.dns import publish as publisher
from altmesh_dashboard.dns.zone import DnsError, ZoneClient
from altmesh_dashboard.metrics import FAILURES
from altmesh_dashboard.models import ApiToken, Relay, Service, utcnow


class ServiceConflict(Exception):
    """The name cannot be the service's: a relay's name, a CNAME, below a delegation."""


class ServiceDnsUnavailable(Exception):
    """DNS is not configured (503) or the server refused or failed the update (502)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _client() -> ZoneClient:
    if not dns_is_configured(current_app.config):
        raise ServiceDnsUnavailable(
            503,
            "DNS management is not configured on the dashboard, so it cannot publish services "
            "(DNS_SERVER, DNS_TSIG_KEY_NAME and DNS_TSIG_SECRET are unset)",
        )
    return ZoneClient.from_config(current_app.config)


def relay_owning(name: str) -> str | None:
    """The relay whose names contain `name` (`r1.alt.` and everything below it), if any."""
    zone = str(current_app.config["DNS_ZONE"]).lower()
    labels = name[: -len(zone) - 1].split(".")
    relay = labels[-1]
    found = get_session().scalar(select(Relay.name).where(Relay.name == relay))
    return found


def _dns_failure(error: DnsError) -> Exception:
    FAILURES.labels(kind="dns_publish").inc()
    if error.kind == "conflict":
        return ServiceConflict(error.message)
    return ServiceDnsUnavailable(502, error.message)


def publish(
    name: str, public_key: str, address: str, token: ApiToken
) -> tuple[Service, bool, bool]:
    """Publish `name` (absolute); returns the stored service, whether the zone changed, and
    whether the service is new to the dashboard."""
    client = _client()
    owner = relay_owning(name)
    if owner is not None:
        raise ServiceConflict(f"{name} belongs to relay {owner}; a service cannot take it")
    try:
        changed = publisher.publish_service(name, public_key, address, client)
    except DnsError as error:
        raise _dns_failure(error) from None
    db = get_session()
    service = db.scalar(select(Service).where(Service.name == name))
    created = service is None
    before = service.audit_view() if service else None
    if service is None:
        service = Service(name=name, public_key=public_key, address=address)
        db.add(service)
    service.public_key = public_key
    service.address = address
    service.updated_at = utcnow()
    token.last_used_at = utcnow()
    after = service.audit_view()
    if changed or before != after:
        record_audit(
            token.subject, "service.register", f"service:{name}", before, after, commit=False
        )
    db.commit()
    return service, changed, created


def withdraw(name: str, token: ApiToken) -> bool:
    """Remove `name`'s AAAA and key TXT records and forget the service; whether anything was
    published."""
    client = _client()
    try:
        changed = publisher.withdraw_service(name, client)
    except DnsError as error:
        raise _dns_failure(error) from None
    db = get_session()
    service = db.scalar(select(Service).where(Service.name == name))
    before = service.audit_view() if service else None
    if service is not None:
        db.delete(service)
    token.last_used_at = utcnow()
    if changed or before is not None:
        record_audit(
            token.subject, "service.withdraw", f"service:{name}", before, None, commit=False
        )
    db.commit()
    return changed
