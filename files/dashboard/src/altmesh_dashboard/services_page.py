"""The Services page: every service of the zone (a name with an AAAA and a key TXT record that
is not a relay's), its key, whether its address names that key, whether it registered through
the API, and the relay it is attached to (from the relays' heartbeats, `attached`)."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass

import dns.name
import dns.rdatatype
from altmesh.dnsrecords import keys_in_txt
from altmesh.protocol.address import address_matches, network_prefix
from altmesh.protocol.keys import decode_key, encode_key
from flask import Blueprint, current_app, render_template
from sqlalchemy import select

from altmesh_dashboard.auth.access import role_required
from altmesh_dashboard.config import dns_is_configured
from altmesh_dashboard.db import get_session
from altmesh_dashboard.dns.zone import DnsError, ZoneClient
from altmesh_dashboard.models import Attachment, Relay, Service

bp = Blueprint("services", __name__, url_prefix="/services")


@dataclass
class ServiceRow:
    name: str
    public_key: str
    address: str
    registered: bool  # through POST /api/v1/services/register
    in_zone: bool
    key_matches_address: bool
    relays: list[str]


def _matches(address: str, public_key: str) -> bool:
    try:
        parsed = ipaddress.IPv6Address(address)
        prefix = network_prefix(str(ipaddress.IPv6Network(f"{parsed}/48", strict=False)))
        return address_matches(parsed, prefix, decode_key(public_key))
    except ValueError:
        return False


def _zone_services(relay_names: set[str]) -> tuple[dict[str, tuple[str, str]], str | None]:
    """name -> (key, address) of every service-like name in the zone, or an error message."""
    if not dns_is_configured(current_app.config):
        return {}, None
    client = ZoneClient.from_config(current_app.config)
    try:
        contents = client.read_zone()
    except DnsError as error:
        return {}, error.message
    origin = client.origin
    relay_owned = {dns.name.Name((name,)).concatenate(origin) for name in relay_names}
    service_suffix = dns.name.from_text("_altmesh._tcp", origin)
    keys: dict[dns.name.Name, str] = {}
    addresses: dict[dns.name.Name, str] = {}
    for record in contents.records:
        if any(record.name.is_subdomain(owned) for owned in relay_owned):
            continue
        if record.name.is_subdomain(service_suffix):
            continue
        if record.rdtype == dns.rdatatype.TXT:
            found = keys_in_txt([record.rdata.strings])  # type: ignore[attr-defined]
            if found.keys:
                keys[record.name] = encode_key(found.keys[0])
        elif record.rdtype == dns.rdatatype.AAAA:
            addresses.setdefault(record.name, record.rdata_text)
    return {name.to_text(): (key, addresses.get(name, "")) for name, key in keys.items()}, None


@bp.get("/")
@role_required("viewer")
def index() -> str:
    db = get_session()
    relays_by_id: dict[int, str] = {
        relay_id: name for relay_id, name in db.execute(select(Relay.id, Relay.name))
    }
    attached: defaultdict[str, list[str]] = defaultdict(list)
    registered = {service.name: service for service in db.scalars(select(Service))}
    zone, error = _zone_services(set(relays_by_id.values()))
    wanted = {address for _key, address in zone.values()} | {s.address for s in registered.values()}
    if wanted:
        for relay_id, address in db.execute(
            select(Attachment.relay_id, Attachment.address).where(Attachment.address.in_(wanted))
        ):
            attached[address].append(relays_by_id[relay_id])
    rows: list[ServiceRow] = []
    for name in sorted(set(zone) | set(registered)):
        stored = registered.get(name)
        key, address = zone.get(name, (stored.public_key, stored.address) if stored else ("", ""))
        rows.append(
            ServiceRow(
                name=name,
                public_key=key,
                address=address,
                registered=stored is not None,
                in_zone=name in zone,
                key_matches_address=_matches(address, key),
                relays=sorted(attached.get(address, [])),
            )
        )
    return render_template(
        "services.html",
        rows=rows,
        error=error,
        dns_configured=dns_is_configured(current_app.config),
    )
