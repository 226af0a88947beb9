#!/usr/bin/python3
"""Reconcile a zone's records with a declared list, through TSIG-signed dynamic updates."""
# ruff: noqa: E402  (Ansible modules keep DOCUMENTATION above the imports)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bind_alt_zone_records
short_description: Reconcile DNS records of a zone with TSIG-signed dynamic updates
description:
  - Runs on the primary server. Reads the TSIG key from a key file on the host (the secret never
    travels through Ansible), queries the current RRsets over TCP, and sends one signed UPDATE
    that replaces every declared RRset that differs.
  - With I(prune), RRsets this module put in the zone earlier (remembered in I(state_file)) that
    are no longer declared are deleted. Records created by other means (e.g. the dashboard) are
    never touched.
options:
  zone: {description: Zone name, type: str, required: true}
  server: {description: Address of the primary, type: str, default: 127.0.0.1}
  port: {description: DNS port of the primary, type: int, default: 53}
  key_file: {description: TSIG key file (tsig-keygen) on the host, type: path, required: true}
  records:
    description: Records, each with name, type, value or values, and optional ttl.
    type: list
    elements: dict
    required: true
  default_ttl: {description: TTL of records that declare none, type: int, default: 3600}
  prune: {description: Delete RRsets declared earlier but not any more, type: bool, default: false}
  state_file: {description: Where the set of managed RRsets is kept, type: path, required: true}
  soa:
    description: SOA fields (mname rname refresh retry expire minimum ttl); BIND owns the serial.
    type: dict
  timeout: {description: Seconds to wait for the zone to be served, type: float, default: 20}
author: altmesh
"""

import json
import os
import re
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.tsig
    import dns.tsigkeyring
    import dns.update

    HAS_DNSPYTHON = True
except ImportError:
    HAS_DNSPYTHON = False

KEY_PATTERN = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{[^}]*?algorithm\s+"?(?P<algorithm>[\w-]+)"?\s*;[^}]*?secret\s+"(?P<secret>[^"]+)"\s*;',
    re.S,
)
# Types an operator must not manage here: the zone's own signing and SOA records.
FORBIDDEN_TYPES = {"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY"}

RRsetKey = tuple[str, str]


class RecordError(Exception):
    """A declared record that cannot be used, with a message that names it."""


def read_tsig_key(path: str) -> tuple[dict[Any, Any], Any, str]:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read()
    except OSError as error:
        raise RecordError(f"cannot read the TSIG key file {path}: {error.strerror}") from error
    match = KEY_PATTERN.search(text)
    if match is None:
        raise RecordError(f"{path} holds no key {{ algorithm ...; secret ...; }} statement")
    key_name = dns.name.from_text(match["name"])
    keyring = {key_name: dns.tsig.Key(key_name, match["secret"], match["algorithm"])}
    return keyring, key_name, match["algorithm"]


def absolute_name(name: str, origin: Any) -> Any:
    if name in ("@", ""):
        return origin
    parsed = dns.name.from_text(name, origin=origin)
    if not parsed.is_subdomain(origin):
        raise RecordError(f"record name {name!r} is outside the zone {origin}")
    return parsed


def parse_value(rdtype: Any, value: Any, origin: Any, where: str) -> Any:
    text = str(value)
    if rdtype == dns.rdatatype.TXT and not text.startswith('"'):
        # A TXT value is one string unless the operator quotes the parts himself.
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=origin, relativize=False)
    except dns.exception.DNSException as error:
        raise RecordError(
            f"{where}: value {value!r} is not valid {dns.rdatatype.to_text(rdtype)} data: {error}"
        ) from error


def desired_rrsets(
    records: list[dict[str, Any]], origin: Any, default_ttl: int
) -> dict[RRsetKey, tuple[int, set[Any]]]:
    wanted: dict[RRsetKey, tuple[int, set[Any]]] = {}
    for index, record in enumerate(records):
        where = f"record #{index + 1} ({record.get('name', '?')} {record.get('type', '?')})"
        for field in ("name", "type"):
            if not isinstance(record.get(field), str):
                raise RecordError(f"{where}: field {field!r} is missing or not a string")
        if ("value" in record) == ("values" in record):
            raise RecordError(f"{where}: give exactly one of 'value' or 'values'")
        values = record["values"] if "values" in record else [record["value"]]
        if not isinstance(values, list) or not values:
            raise RecordError(f"{where}: 'values' must be a non-empty list")
        type_text = record["type"].upper()
        if type_text in FORBIDDEN_TYPES:
            raise RecordError(
                f"{where}: type {type_text} is managed by BIND itself, not by records"
            )
        try:
            rdtype = dns.rdatatype.from_text(type_text)
        except dns.exception.DNSException as error:
            raise RecordError(f"{where}: unknown record type {record['type']!r}") from error
        ttl = record.get("ttl", default_ttl)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 2147483647:
            raise RecordError(f"{where}: ttl must be an integer number of seconds")
        try:
            name = absolute_name(record["name"], origin)
        except dns.exception.DNSException as error:
            raise RecordError(f"{where}: invalid name: {error}") from error
        key = (name.to_text(), dns.rdatatype.to_text(rdtype))
        rdatas = {parse_value(rdtype, value, origin, where) for value in values}
        if key in wanted:
            previous_ttl, previous = wanted[key]
            if previous_ttl != ttl:
                raise RecordError(
                    f"{where}: {key[0]} {key[1]} is declared twice with different TTLs"
                )
            rdatas |= previous
        wanted[key] = (ttl, rdatas)
    names_with_cname = {name for name, rdtype in wanted if rdtype == "CNAME"}
    for name, rdtype in wanted:
        if name in names_with_cname and rdtype != "CNAME":
            raise RecordError(f"{name} has a CNAME and a {rdtype} record: a CNAME must stand alone")
    return wanted


class ZoneClient:
    def __init__(self, server: str, port: int, timeout: float) -> None:
        self.server = server
        self.port = port
        self.timeout = timeout

    def query(self, name: str, rdtype: str) -> Any:
        request = dns.message.make_query(name, rdtype)
        request.flags &= ~dns.flags.RD
        return dns.query.tcp(request, self.server, port=self.port, timeout=self.timeout)

    def wait_until_served(self, origin: Any, deadline: float) -> None:
        last_problem = "no answer"
        while time.monotonic() < deadline:
            try:
                response = self.query(origin.to_text(), "SOA")
                if response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA:
                    return
                last_problem = f"rcode {dns.rcode.to_text(response.rcode())}"
            except (OSError, dns.exception.DNSException) as error:
                last_problem = str(error) or type(error).__name__
            time.sleep(0.3)
        raise RecordError(
            f"the zone {origin} is not served by {self.server}:{self.port} ({last_problem})"
        )

    def is_served(self, origin: Any) -> bool:
        try:
            self.wait_until_served(origin, time.monotonic() + 1.0)
        except RecordError:
            return False
        return True

    def current(self, name: str, rdtype: str) -> tuple[int, set[Any]] | None:
        response = self.query(name, rdtype)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise RecordError(
                f"query {name} {rdtype} answered {dns.rcode.to_text(response.rcode())}"
            )
        wanted_name = dns.name.from_text(name)
        wanted_type = dns.rdatatype.from_text(rdtype)
        for section in (response.answer, response.authority):
            for rrset in section:
                if rrset.name == wanted_name and rrset.rdtype == wanted_type:
                    return rrset.ttl, set(rrset)
        # Glue below a delegation and out-of-zone data come back only as additional data.
        return None


def soa_update(client: ZoneClient, origin: Any, soa: dict[str, Any]) -> tuple[Any, Any] | None:
    """The (current, wanted) SOA when its fields differ from the declared ones, else None."""
    current = client.current(origin.to_text(), "SOA")
    if current is None:
        raise RecordError(f"the zone {origin} has no SOA record")
    ttl, rdatas = current
    rdata = next(iter(rdatas))
    fields = (
        soa["mname"],
        soa["rname"],
        soa["refresh"],
        soa["retry"],
        soa["expire"],
        soa["minimum"],
    )
    text = "{} {} {} {} {} {} {}".format(fields[0], fields[1], rdata.serial + 1, *fields[2:])
    wanted = dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.SOA, text, origin=origin, relativize=False
    )
    if wanted.replace(serial=rdata.serial) == rdata and ttl == int(soa["ttl"]):
        return None
    return (ttl, rdata), (int(soa["ttl"]), wanted)


def rrset_lines(key: RRsetKey, state: tuple[int, set[Any]] | None, origin: Any) -> list[str]:
    if state is None:
        return []
    ttl, rdatas = state
    return sorted(f"{key[0]} {ttl} IN {key[1]} {rdata.to_text()}" for rdata in rdatas)


def read_state(path: str) -> set[RRsetKey]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as error:
        raise RecordError(
            f"the record state file {path} is unreadable ({error}); remove it to start afresh"
        ) from error
    return {(str(name), str(rdtype)) for name, rdtype in data.get("managed", [])}


def write_state(path: str, managed: set[RRsetKey]) -> None:
    directory = os.path.dirname(path) or "."
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".bind_alt_records.")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"managed": sorted([list(key) for key in managed])}, handle, indent=1)
        handle.write("\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def reconcile(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    origin = dns.name.from_text(params["zone"])
    wanted = desired_rrsets(params["records"], origin, params["default_ttl"])
    client = ZoneClient(params["server"], params["port"], 5.0)
    if module.check_mode and not client.is_served(origin):
        # a first run in check mode: nothing to compare with yet
        return {"changed": True, "msg": f"{origin} is not served yet: every record would be added"}
    client.wait_until_served(origin, time.monotonic() + params["timeout"])
    keyring, key_name, algorithm = read_tsig_key(params["key_file"])

    previously_managed = read_state(params["state_file"])
    to_check = set(wanted) | (previously_managed if params["prune"] else set())
    update = dns.update.UpdateMessage(
        origin, keyring=keyring, keyname=key_name, keyalgorithm=algorithm
    )
    before: list[str] = []
    after: list[str] = []
    replaced: list[str] = []
    deleted: list[str] = []
    for key in sorted(to_check):
        current = client.current(*key)
        desired = wanted.get(key)
        if desired is None:
            if current is not None:
                update.delete(key[0], key[1])
                deleted.append(f"{key[0]} {key[1]}")
                before += rrset_lines(key, current, origin)
            continue
        if current == desired:
            continue
        ttl, rdatas = desired
        update.replace(key[0], ttl, *sorted(rdatas, key=lambda rdata: rdata.to_text()))
        replaced.append(f"{key[0]} {key[1]}")
        before += rrset_lines(key, current, origin)
        after += rrset_lines(key, desired, origin)

    if params["soa"]:
        soa_change = soa_update(client, origin, params["soa"])
        if soa_change is not None:
            current_soa, wanted_soa = soa_change
            update.replace(origin, wanted_soa[0], wanted_soa[1])
            replaced.append(f"{origin} SOA")
            before += rrset_lines(
                (origin.to_text(), "SOA"), (current_soa[0], {current_soa[1]}), origin
            )
            after += rrset_lines(
                (origin.to_text(), "SOA"), (wanted_soa[0], {wanted_soa[1]}), origin
            )

    managed = set(wanted) if params["prune"] else previously_managed | set(wanted)
    state_changes = managed != previously_managed
    changed = bool(replaced or deleted or state_changes)
    if changed and not module.check_mode:
        if replaced or deleted:
            try:
                response = dns.query.tcp(
                    update, params["server"], port=params["port"], timeout=10.0
                )
            except dns.tsig.PeerError as error:
                problem = type(error).__name__
                raise RecordError(
                    f"the primary rejected the TSIG signature of key {key_name} ({problem})"
                ) from error
            except (OSError, dns.exception.DNSException) as error:
                raise RecordError(f"the dynamic update failed: {error}") from error
            if response.rcode() != dns.rcode.NOERROR:
                rcode = dns.rcode.to_text(response.rcode())
                raise RecordError(
                    f"the primary refused the dynamic update signed with {key_name}: {rcode}"
                )
        write_state(params["state_file"], managed)
    result: dict[str, Any] = {"changed": changed, "replaced": replaced, "deleted": deleted}
    if module._diff:
        result["diff"] = {
            "before_header": f"zone {origin}",
            "after_header": f"zone {origin}",
            "before": "\n".join(before) + ("\n" if before else ""),
            "after": "\n".join(after) + ("\n" if after else ""),
        }
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "zone": {"type": "str", "required": True},
            "server": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 53},
            "key_file": {"type": "path", "required": True},
            "records": {"type": "list", "elements": "dict", "required": True},
            "default_ttl": {"type": "int", "default": 3600},
            "prune": {"type": "bool", "default": False},
            "state_file": {"type": "path", "required": True},
            "soa": {"type": "dict"},
            "timeout": {"type": "float", "default": 20.0},
        },
        supports_check_mode=True,
    )
    if not HAS_DNSPYTHON:
        module.fail_json(
            msg="python3-dnspython is needed on the primary (bind_alt_packages installs it)"
        )
    try:
        module.exit_json(**reconcile(module))
    except RecordError as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
