"""Publish relays in the zone when they register, and keep their SRV weights in line with load.

For a relay named `r1` in zone `alt.` (docs/dashboard-dns.md has the full description):

    r1.alt.                     AAAA  <overlay address>
    r1.alt.                     TXT   "altmesh-key=<base64 X25519 public key>"
    _altmesh._tcp.alt.          SRV   0 <weight> <port> <target>      one per endpoint
    _altmesh._tcp.alt.          PTR   r1._altmesh._tcp.alt.           DNS-SD browsing
    r1._altmesh._tcp.alt.       SRV   0 <weight> <port> <target>      DNS-SD instance
    r1._altmesh._tcp.alt.       TXT   "txtvers=1" "relay=r1" "altmesh-key=<base64>"
    ep<i>.r1.alt.               A/AAAA <endpoint address>              when an endpoint is an IP

An SRV target must be a name, so an endpoint given as an IP address gets the name `ep<i>.r1.alt.`;
an endpoint given as a host name is used as the target directly. The relay's own instance SRV
RRset records what it published, so a re-registration removes exactly its old shared SRVs.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
from altmesh.dnsrecords import key_txt, keys_in_txt, txt_presentation
from altmesh.protocol.keys import decode_key
from flask import current_app

from altmesh_dashboard.audit import record_audit
from altmesh_dashboard.db import get_session
from altmesh_dashboard.dns.zone import DnsError, Record, ZoneClient, prerequisite_rdataset
from altmesh_dashboard.metrics import DNS_UPDATES
from altmesh_dashboard.models import Relay, utcnow
from altmesh_dashboard.status import relay_state

SERVICE_LABELS = ("_altmesh", "_tcp")
RELAY_RECORD_TTL = 60  # short, so weights and endpoint changes reach clients quickly
SRV_PRIORITY = 0
UNKNOWN_LOAD_WEIGHT = 50  # before the first heartbeat: an average relay
MIN_WEIGHT = 1  # RFC 2782: weight 0 means "almost never"; a busy relay stays selectable
SILENT_WEIGHT = 0  # a relay that stopped reporting: chosen only when nothing else is left
WEIGHT_STEPS = 10  # load is bucketed so small load jitter does not cause DNS updates
WEIGHT_RECHECK_SECONDS = 300.0  # after this, a stored weight is checked against the server again
_RETRYABLE = ("changed", "conflict")
RETRY_WINDOW_SECONDS = 3.0  # how long a prerequisite failure is retried with fresh reads


def weight_for_load(load: float | None) -> int:
    """SRV weight for a relay load in [0, 1]: idle 100, full 1, in steps of 10; unknown 50."""
    if load is None or not math.isfinite(load):
        return UNKNOWN_LOAD_WEIGHT
    clamped = min(max(load, 0.0), 1.0)
    step = int((1.0 - clamped) * WEIGHT_STEPS + 0.5)  # round half up, never banker's rounding
    return max(MIN_WEIGHT, step * (100 // WEIGHT_STEPS))


def relay_weight(relay: Relay) -> int:
    """The SRV weight a relay should have now: the weight of its load while its heartbeats are
    fresh (state "up"); UNKNOWN_LOAD_WEIGHT when it registered less than
    RELAY_STALE_AFTER_SECONDS ago and has sent no heartbeat yet; SILENT_WEIGHT otherwise."""
    now = utcnow()
    if relay.last_heartbeat_at is None:
        fresh = relay_state(relay.registered_at, now, current_app.config) == "up"
        return weight_for_load(None) if fresh else SILENT_WEIGHT
    state = relay_state(relay.last_heartbeat_at, now, current_app.config)
    return weight_for_load(relay.load) if state == "up" else SILENT_WEIGHT


@dataclass(frozen=True)
class Endpoint:
    target: dns.name.Name
    port: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None  # set when we own the target


@dataclass(frozen=True)
class RelayNames:
    host: dns.name.Name  # r1.alt.
    service: dns.name.Name  # _altmesh._tcp.alt.
    instance: dns.name.Name  # r1._altmesh._tcp.alt.

    @classmethod
    def of(cls, relay_name: str, origin: dns.name.Name) -> RelayNames:
        service = dns.name.Name(SERVICE_LABELS).concatenate(origin)
        return cls(
            host=dns.name.Name((relay_name,)).concatenate(origin),
            service=service,
            instance=dns.name.Name((relay_name,)).concatenate(service),
        )


def relay_endpoints(relay: Relay, origin: dns.name.Name) -> list[Endpoint]:
    names = RelayNames.of(relay.name, origin)
    endpoints: list[Endpoint] = []
    for index, endpoint in enumerate(relay.endpoints):
        host = str(endpoint["host"])
        port = int(endpoint["port"])
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            endpoints.append(Endpoint(dns.name.from_text(host), port, None))
        else:
            target = dns.name.Name((f"ep{index}",)).concatenate(names.host)
            endpoints.append(Endpoint(target, port, address))
    return endpoints


def _srv(weight: int, port: int, target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.SRV, f"{SRV_PRIORITY} {weight} {port} {target}"
    )


def _txt(*strings: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, txt_presentation(*strings))


def refuse_cname_owners(client: ZoneClient, names: Sequence[dns.name.Name], what: str) -> None:
    """Raise DnsError("conflict") if any of `names` is a CNAME: named silently ignores records
    added beside a CNAME (RFC 2136 §3.4.2.2) and would answer NOERROR, so "published" would be a
    lie. The update's prerequisites catch a CNAME added meanwhile."""
    for name in names:
        if dns.rdatatype.CNAME in client.types_at(name):
            raise DnsError(
                "conflict",
                f"cannot publish {what}: {name} is a CNAME in the zone, and named ignores other "
                "records at a CNAME; delete the CNAME or choose another name",
            )


def _client(client: ZoneClient | None) -> ZoneClient:
    return client if client is not None else ZoneClient.from_config(current_app.config)


def _send_with_retry(client: ZoneClient, build: Any, what: str) -> None:
    """`build()` reads what it needs and returns the update. A prerequisite failure (a read from
    the signed copy, which trails an update by a few ms and longer on a loaded host, or a
    concurrent worker) is retried with a fresh read, backing off, for at most
    RETRY_WINDOW_SECONDS."""
    deadline = time.monotonic() + RETRY_WINDOW_SECONDS
    pause = 0.05
    while True:
        try:
            client.send(build(), what)
        except DnsError as err:
            if err.kind in _RETRYABLE and time.monotonic() + pause < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            DNS_UPDATES.labels(result=err.kind).inc()
            raise
        DNS_UPDATES.labels(result="success").inc()
        return


# ---------------------------------------------------------------- published weight
# The weight last published is kept on the relay's row (not in this process): every gunicorn
# worker sees the same value, and it survives restarts.


def _remember_weight(relay: Relay, weight: int) -> None:
    """Record the weight now in the zone on the relay's row and commit it."""
    relay.published_weight = weight
    relay.weight_published_at = utcnow()
    get_session().commit()


def _known_weight(relay: Relay) -> int | None:
    """The weight last published, unless it is old enough to be checked against the server."""
    if relay.published_weight is None or relay.weight_published_at is None:
        return None
    age = (utcnow() - relay.weight_published_at).total_seconds()
    return relay.published_weight if 0 <= age <= WEIGHT_RECHECK_SECONDS else None


# --------------------------------------------------------------------------- publish


def publish_relay(
    relay: Relay, client: ZoneClient | None = None, *, weight: int | None = None
) -> list[Record]:
    """Publish (or re-publish) all of a relay's records in one update; returns what was sent.
    The SRV weight is `weight` (default: `relay_weight(relay)`). Raises DnsError when the server
    refuses or cannot be reached, or a name the relay needs is a CNAME."""
    client = _client(client)
    origin = client.origin
    names = RelayNames.of(relay.name, origin)
    weight = relay_weight(relay) if weight is None else weight
    endpoints = relay_endpoints(relay, origin)
    key_string = key_txt(decode_key(relay.public_key))
    key_record = _txt(key_string)
    instance_txt = _txt("txtvers=1", f"relay={relay.name}", key_string)
    owned_targets = [e.target for e in endpoints if e.address is not None]
    refuse_cname_owners(client, [names.host, names.instance, *owned_targets], f"relay {relay.name}")
    ttl = RELAY_RECORD_TTL

    published: list[Record] = [
        Record(names.host, ttl, dns.rdatatype.AAAA, _aaaa(relay.address)),
        Record(names.host, ttl, dns.rdatatype.TXT, key_record),
        Record(names.instance, ttl, dns.rdatatype.TXT, instance_txt),
        Record(
            names.service,
            ttl,
            dns.rdatatype.PTR,
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.PTR, names.instance.to_text()),
        ),
    ]
    for endpoint in endpoints:
        srv = _srv(weight, endpoint.port, endpoint.target)
        published.append(Record(names.service, ttl, dns.rdatatype.SRV, srv))
        published.append(Record(names.instance, ttl, dns.rdatatype.SRV, srv))
        if endpoint.address is not None:
            rdtype = dns.rdatatype.A if endpoint.address.version == 4 else dns.rdatatype.AAAA
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, str(endpoint.address))
            published.append(Record(endpoint.target, ttl, rdtype, rdata))
    previous: list[Record] = []

    def build() -> dns.update.UpdateMessage:
        nonlocal previous
        previous = client.lookup(names.instance, dns.rdatatype.SRV)
        update = client.update_message()
        if previous:
            update.present(names.instance, prerequisite_rdataset(previous))
        else:
            update.absent(names.instance, dns.rdatatype.SRV)
        for owner in (names.host, names.instance, *owned_targets):
            update.absent(owner, dns.rdatatype.CNAME)
        update.delete(names.host, dns.rdatatype.AAAA)
        update.delete(names.host, dns.rdatatype.TXT)
        for old in previous:
            update.delete(names.service, old.rdata)
            old_target = _target_of(old)
            if old_target.is_subdomain(names.host) and old_target != names.host:
                update.delete(old_target)  # an ep<i> name we created for an IP endpoint
        update.delete(names.instance, dns.rdatatype.SRV)
        update.delete(names.instance, dns.rdatatype.TXT)
        for record in published:
            update.add(record.name, record.ttl, record.rdata)
        return update

    _send_with_retry(client, build, f"publishing relay {relay.name}")
    relay.published_weight = weight
    relay.weight_published_at = utcnow()
    record_audit(  # commits the weight with the audit entry
        f"relay:{relay.name}",
        "dns.publish_relay",
        f"dns:{names.host.to_text()}",
        {"instance_srv": [r.rdata_text for r in previous]} if previous else None,
        {"records": [f"{r.name} {r.type_text} {r.rdata_text}" for r in published]},
    )
    return published


def unpublish_relay(relay: Relay, client: ZoneClient | None = None) -> None:
    """Remove every record `publish_relay` made for the relay (when it is forgotten); other
    relays' records and hand-made records at other names are untouched."""
    client = _client(client)
    names = RelayNames.of(relay.name, client.origin)
    previous: list[Record] = []

    def build() -> dns.update.UpdateMessage:
        nonlocal previous
        previous = client.lookup(names.instance, dns.rdatatype.SRV)
        update = client.update_message()
        if previous:
            update.present(names.instance, prerequisite_rdataset(previous))
        for old in previous:
            update.delete(names.service, old.rdata)
            old_target = _target_of(old)
            if old_target.is_subdomain(names.host) and old_target != names.host:
                update.delete(old_target)
        update.delete(names.host, dns.rdatatype.AAAA)
        update.delete(names.host, dns.rdatatype.TXT)
        update.delete(names.instance)
        update.delete(
            names.service,
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.PTR, names.instance.to_text()),
        )
        return update

    _send_with_retry(client, build, f"removing relay {relay.name}'s records")
    record_audit(
        None,
        "dns.unpublish_relay",
        f"dns:{names.host.to_text()}",
        {"instance_srv": [r.rdata_text for r in previous]},
        None,
    )


def _aaaa(address: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.AAAA, address)


def update_relay_weight(
    relay: Relay, client: ZoneClient | None = None, *, weight: int | None = None
) -> bool:
    """Bring the relay's SRV weights to `weight` (default: `relay_weight(relay)`: 0 while the
    relay is silent, else the weight of its load); returns True when an update was sent.
    Heartbeats stay cheap: nothing is sent (nor even asked) while the weight is unchanged, and
    the server is re-checked at most every few minutes."""
    client = _client(client)
    weight = relay_weight(relay) if weight is None else weight
    if _known_weight(relay) == weight:
        return False
    names = RelayNames.of(relay.name, client.origin)
    current = client.lookup(names.instance, dns.rdatatype.SRV)
    if not current:
        # Never published, removed by hand, or a read a few ms behind a publication: publishing
        # it all is right in each case (its prerequisite catches the last one and retries).
        publish_relay(relay, client, weight=weight)
        return True
    if all(_weight_of(r) == weight for r in current):
        _remember_weight(relay, weight)
        return False

    def build() -> dns.update.UpdateMessage:
        seen = client.lookup(names.instance, dns.rdatatype.SRV)
        if not seen:
            raise DnsError("changed", f"relay {relay.name}'s SRV records vanished meanwhile")
        update = client.update_message()
        update.present(names.instance, prerequisite_rdataset(seen))
        for old in seen:
            new = _srv(weight, _port_of(old), _target_of(old))
            update.delete(names.instance, old.rdata)
            update.delete(names.service, old.rdata)
            update.add(names.instance, old.ttl, new)
            update.add(names.service, old.ttl, new)
        return update

    _send_with_retry(client, build, f"setting relay {relay.name}'s SRV weight to {weight}")
    _remember_weight(relay, weight)
    return True


def _weight_of(record: Record) -> int:
    return int(record.rdata.weight)  # type: ignore[attr-defined]


def _port_of(record: Record) -> int:
    return int(record.rdata.port)  # type: ignore[attr-defined]


def _target_of(record: Record) -> dns.name.Name:
    target: dns.name.Name = record.rdata.target  # type: ignore[attr-defined]
    return target


def published_srv_weights(client: ZoneClient, relay_name: str) -> Sequence[int]:
    """The weights the server now serves for a relay's instance SRV records."""
    names = RelayNames.of(relay_name, client.origin)
    return sorted(_weight_of(r) for r in client.lookup(names.instance, dns.rdatatype.SRV))


# --------------------------------------------------------------------------- services

SERVICE_RECORD_TTL = 60  # like relays': a re-keyed service is seen within a minute


def _is_key_txt(record: Record) -> bool:
    found = keys_in_txt([record.rdata.strings])  # type: ignore[attr-defined]
    return bool(found.keys or found.problems)


def _service_records(client: ZoneClient, owner: dns.name.Name) -> tuple[list[Record], list[Record]]:
    """The name's AAAA records and its key TXT records (other TXT records are not the service's
    and are left alone)."""
    aaaa = client.lookup(owner, dns.rdatatype.AAAA)
    key_records = [r for r in client.lookup(owner, dns.rdatatype.TXT) if _is_key_txt(r)]
    return aaaa, key_records


def publish_service(
    name: str, public_key: str, address: str, client: ZoneClient | None = None
) -> bool:
    """Make `name` hold exactly AAAA `address` and the key TXT of `public_key` (other TXT
    records stay). Returns False when the zone already said so (nothing sent). DnsError
    ("conflict") when the name is a CNAME or below a delegation, where named would not serve
    the records; other DnsErrors when the server refuses or fails."""
    client = _client(client)
    owner = dns.name.from_text(name)
    cut = client.zone_cut_above(owner)
    if cut is not None:
        raise DnsError(
            "conflict",
            f"cannot publish service {owner}: it is below the delegation {cut}, whose records "
            "the zone does not serve; choose a name outside the delegated subtree",
        )
    refuse_cname_owners(client, [owner], f"service {owner}")
    wanted_aaaa = _aaaa(address)
    wanted_txt = _txt(key_txt(decode_key(public_key)))
    aaaa, key_records = _service_records(client, owner)
    if [r.rdata for r in aaaa] == [wanted_aaaa] and [r.rdata for r in key_records] == [wanted_txt]:
        return False

    def build() -> dns.update.UpdateMessage:
        _current_aaaa, current_keys = _service_records(client, owner)
        update = client.update_message()
        update.absent(owner, dns.rdatatype.CNAME)
        update.delete(owner, dns.rdatatype.AAAA)
        for old in current_keys:
            update.delete(owner, old.rdata)
        update.add(owner, SERVICE_RECORD_TTL, wanted_aaaa)
        update.add(owner, SERVICE_RECORD_TTL, wanted_txt)
        return update

    _send_with_retry(client, build, f"publishing service {owner}")
    return True


def withdraw_service(name: str, client: ZoneClient | None = None) -> bool:
    """Remove `name`'s AAAA records and key TXT records; False when it had none."""
    client = _client(client)
    owner = dns.name.from_text(name)
    aaaa, key_records = _service_records(client, owner)
    if not aaaa and not key_records:
        return False

    def build() -> dns.update.UpdateMessage:
        _current_aaaa, current_keys = _service_records(client, owner)
        update = client.update_message()
        update.delete(owner, dns.rdatatype.AAAA)
        for old in current_keys:
            update.delete(owner, old.rdata)
        return update

    _send_with_retry(client, build, f"withdrawing service {owner}")
    return True
