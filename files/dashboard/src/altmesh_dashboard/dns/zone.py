"""Read and change the managed zone on its primary `named`: TSIG-signed AXFR to read, TSIG-signed
RFC 2136 updates to change, `rndc status` for the server's health.

Input is validated before anything is sent (`validate_record` raises `RecordInvalid` naming each
bad field), and every way the server or the network can say no becomes a `DnsError` whose message
says what happened and what to do; nothing here lets a raw dnspython exception escape.

A change is "delete the exact old record, add the new one" in one update, guarded by a
prerequisite that the old record's whole RRset is still what the operator saw: RFC 2136 compares
whole RRsets, so a concurrent edit of any record of that name and type is detected (NXRRSET) and
reported instead of being overwritten.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
from altmesh.dnsrecords import typed_txt_presentation

EDITABLE_TYPES = ("A", "AAAA", "TXT", "SRV", "CNAME", "MX", "CAA", "PTR", "NS")
# Records the signer (named's dnssec-policy) owns; shown as counts, never offered for editing.
DNSSEC_TYPES = frozenset(
    {
        dns.rdatatype.RRSIG,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.CDS,
        dns.rdatatype.CDNSKEY,
        dns.rdatatype.from_text("TYPE65534"),  # BIND's private signing-state records
    }
)
MIN_TTL = 1
MAX_TTL = 604800  # one week: longer TTLs make a mistake outlive any reasonable fix
RNDC_BINARY = "/usr/sbin/rndc"
SIGNING_LAG_PAUSE_SECONDS = 0.03  # first pause; doubled each time, at most 0.5 s
SIGNING_LAG_WINDOW_SECONDS = 2.0  # how long a read may trail an update before it counts as gone


class DnsError(Exception):
    """The server or the network refused or failed an operation; `message` is for the operator.

    `kind` is a short stable label (refused, notauth, notzone, conflict, changed, timeout,
    unreachable, tsig, server, rndc) used for metrics and tests."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class RecordInvalid(ValueError):
    """Input that must not be sent: `errors` maps each bad field to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in self.errors.items()))


@dataclass(frozen=True)
class Record:
    """One resource record of the zone, with an absolute owner name."""

    name: dns.name.Name
    ttl: int
    rdtype: dns.rdatatype.RdataType
    rdata: dns.rdata.Rdata

    @property
    def type_text(self) -> str:
        return dns.rdatatype.to_text(self.rdtype)

    @property
    def rdata_text(self) -> str:
        return self.rdata.to_text()

    def relative_name(self, origin: dns.name.Name) -> str:
        return self.name.relativize(origin).to_text()

    def audit_view(self) -> dict[str, Any]:
        return {
            "name": self.name.to_text(),
            "ttl": self.ttl,
            "type": self.type_text,
            "rdata": self.rdata_text,
        }


@dataclass
class ZoneContents:
    """What an AXFR returned: editable records, and the signer's records counted by type."""

    origin: dns.name.Name
    serial: int
    records: list[Record]
    dnssec_counts: dict[str, int] = field(default_factory=dict)
    soa: str = ""

    def rrset_at(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> list[Record]:
        return [r for r in self.records if r.name == name and r.rdtype == rdtype]


@dataclass(frozen=True)
class ZoneSettings:
    server: str
    port: int
    zone: dns.name.Name
    key_name: str
    secret: str
    algorithm: str
    timeout: float
    rndc_address: str = "127.0.0.1"
    rndc_port: int = 953
    rndc_key_file: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ZoneSettings:
        return cls(
            server=str(config["DNS_SERVER"]),
            port=int(config["DNS_PORT"]),
            zone=dns.name.from_text(str(config["DNS_ZONE"])),
            key_name=str(config["DNS_TSIG_KEY_NAME"]),
            secret=str(config["DNS_TSIG_SECRET"]),
            algorithm=str(config["DNS_TSIG_ALGORITHM"]),
            timeout=float(config["DNS_TIMEOUT"]),
            rndc_address=str(config.get("RNDC_ADDRESS") or "127.0.0.1"),
            rndc_port=int(config.get("RNDC_PORT") or 953),
            rndc_key_file=str(config.get("RNDC_KEY_FILE") or ""),
        )

    @property
    def where(self) -> str:
        return f"{self.server} port {self.port}"


# --------------------------------------------------------------------------- validation


# named's check-names (on by default, "fail" for a primary zone) refuses an update whose owner
# or target breaks the host-name rule; checking first says so, instead of a bare REFUSED.
HOSTNAME_OWNER_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.MX})


def _is_hostname(name: dns.name.Name, *, wildcard_ok: bool) -> bool:
    """RFC 952/1123 host name: labels of letters, digits and '-' (not at either end); a leading
    `*` label when `wildcard_ok` (as named's check-names allows for owners)."""
    labels = [label.decode("ascii", "replace") for label in name.labels if label]
    if wildcard_ok and labels and labels[0] == "*":
        labels = labels[1:]
    return all(
        label.replace("-", "").isalnum()
        and label.isascii()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )


def _check_names_problem(owner: dns.name.Name, rdata: dns.rdata.Rdata) -> dict[str, str]:
    errors: dict[str, str] = {}
    kind = dns.rdatatype.to_text(rdata.rdtype)
    if rdata.rdtype in HOSTNAME_OWNER_TYPES and not _is_hostname(owner, wildcard_ok=True):
        errors["name"] = (
            f"{owner} is not a host name (letters, digits and '-' only), and named's "
            f"check-names refuses {kind} records there"
        )
    target = getattr(rdata, "exchange", None) if rdata.rdtype == dns.rdatatype.MX else None
    if rdata.rdtype == dns.rdatatype.NS:
        target = getattr(rdata, "target", None)
    if isinstance(target, dns.name.Name) and not _is_hostname(target, wildcard_ok=False):
        errors["rdata"] = (
            f"{target} is not a host name (letters, digits and '-' only), and named's "
            f"check-names refuses {kind} records pointing at it"
        )
    return errors


def parse_name(text: str, origin: dns.name.Name) -> dns.name.Name:
    """A record name as an operator types it: relative to the zone ("www", "@") or absolute."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("is required (use @ for the zone apex)")
    if any(ch.isspace() for ch in stripped):
        raise ValueError(f"{stripped!r} contains spaces")
    try:
        name = dns.name.from_text(stripped, origin=origin)
    except dns.exception.DNSException as err:
        raise ValueError(f"{stripped!r} is not a valid DNS name: {err}") from None
    if not name.is_subdomain(origin):
        raise ValueError(
            f"{name.to_text()} is outside the zone {origin.to_text()}; "
            f"give a name relative to the zone (www) or ending in .{origin.to_text()}"
        )
    return name


def validate_record(
    origin: dns.name.Name, name: str, ttl: str | int, rdtype: str, rdata: str
) -> Record:
    """Check one record as typed into the form; raise RecordInvalid naming every bad field."""
    errors: dict[str, str] = {}
    owner: dns.name.Name | None = None
    try:
        owner = parse_name(name, origin)
    except ValueError as err:
        errors["name"] = str(err)

    ttl_value = 0
    try:
        ttl_value = int(str(ttl).strip())
    except ValueError:
        errors["ttl"] = f"{str(ttl).strip()!r} is not a whole number of seconds"
    else:
        if not MIN_TTL <= ttl_value <= MAX_TTL:
            errors["ttl"] = f"must be between {MIN_TTL} and {MAX_TTL} seconds, got {ttl_value}"

    type_text = rdtype.strip().upper()
    if type_text not in EDITABLE_TYPES:
        errors["type"] = (
            f"{rdtype!r} cannot be edited here; choose one of {', '.join(EDITABLE_TYPES)}"
        )
        raise RecordInvalid(errors)
    type_value = dns.rdatatype.from_text(type_text)

    if owner is not None and owner == origin and type_value == dns.rdatatype.CNAME:
        errors["name"] = "the zone apex (@) cannot be a CNAME: it holds the SOA and NS records"

    data_text = rdata.strip()
    parsed: dns.rdata.Rdata | None = None
    if not data_text:
        errors["rdata"] = f"is required: the {type_text} record's data"
    elif "\n" in data_text or "\r" in data_text:
        errors["rdata"] = "must be on one line"
    else:
        if type_value == dns.rdatatype.TXT:
            data_text = typed_txt_presentation(data_text)
        try:
            parsed = dns.rdata.from_text(
                dns.rdataclass.IN, type_value, data_text, origin=origin, relativize=False
            )
        except (dns.exception.DNSException, ValueError) as err:
            errors["rdata"] = (
                f"not valid {type_text} data ({_describe_parse_error(type_text, err)})"
            )
    if owner is not None and parsed is not None:
        for field_name, problem in _check_names_problem(owner, parsed).items():
            errors.setdefault(field_name, problem)
    if errors or owner is None or parsed is None:
        raise RecordInvalid(errors)
    return Record(owner, ttl_value, type_value, parsed)


_TYPE_HINTS = {
    "A": "an IPv4 address such as 192.0.2.10",
    "AAAA": "an IPv6 address such as fd00::10",
    "TXT": 'text, or quoted strings such as "v=1" "part two"',
    "SRV": "priority weight port target, such as 0 10 443 relay1.alt.",
    "CNAME": "the target name, such as www.alt.",
    "MX": "preference and mail host, such as 10 mail.alt.",
    "CAA": 'flags tag value, such as 0 issue "letsencrypt.org"',
    "PTR": "the target name, such as host.alt.",
    "NS": "a name server's name, such as ns2.alt.",
}


def _describe_parse_error(type_text: str, err: BaseException) -> str:
    detail = str(err) or type(err).__name__
    return f"{detail}; expected {_TYPE_HINTS[type_text]}"


# --------------------------------------------------------------------------- the client


class ZoneClient:
    """Talks to the zone's primary server. Every public method raises DnsError on failure."""

    def __init__(self, settings: ZoneSettings) -> None:
        self.settings = settings
        self.origin = settings.zone
        self._keyring: dict[dns.name.Name, dns.tsig.Key] | None = None
        if settings.key_name and settings.secret:
            self._keyring = dns.tsigkeyring.from_text({settings.key_name: settings.secret})

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ZoneClient:
        return cls(ZoneSettings.from_config(config))

    # ----------------------------------------------------------------- reading

    def read_zone(self) -> ZoneContents:
        """The whole zone by TSIG-signed AXFR, split into editable and DNSSEC records."""
        s = self.settings
        try:
            zone = dns.zone.from_xfr(
                dns.query.xfr(
                    s.server,
                    self.origin,
                    port=s.port,
                    timeout=s.timeout,
                    lifetime=s.timeout * 4,
                    keyring=self._keyring,
                    keyname=s.key_name or None,
                    keyalgorithm=s.algorithm,
                    relativize=False,
                ),
                relativize=False,
            )
        except Exception as err:  # every failure becomes one clear message
            raise self._explain(err, "reading the zone (AXFR)") from err
        records: list[Record] = []
        dnssec_counts: dict[str, int] = {}
        serial = 0
        soa_text = ""
        for name, node in sorted(zone.nodes.items(), key=lambda item: item[0]):
            for rdataset in node.rdatasets:
                covers_dnssec = rdataset.rdtype in DNSSEC_TYPES
                if covers_dnssec:
                    label = dns.rdatatype.to_text(rdataset.rdtype)
                    dnssec_counts[label] = dnssec_counts.get(label, 0) + len(rdataset)
                    continue
                if rdataset.rdtype == dns.rdatatype.SOA:
                    soa = rdataset[0]
                    serial = int(soa.serial)
                    soa_text = soa.to_text()
                    continue
                for rdata in sorted(rdataset, key=lambda r: r.to_text()):
                    records.append(Record(name, rdataset.ttl, rdataset.rdtype, rdata))
        records.sort(key=lambda r: (r.name, r.type_text, r.rdata_text))
        return ZoneContents(self.origin, serial, records, dnssec_counts, soa_text)

    def lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> list[Record]:
        """The RRset `name`/`rdtype` as the zone holds it now (TCP, authoritative). At or below a
        delegation a query gets a referral instead (the delegation NS, glue and anything else
        there are not answered), so the RRset is read from a zone transfer."""
        query = dns.message.make_query(name, rdtype)
        response = self._exchange(query, f"looking up {name} {dns.rdatatype.to_text(rdtype)}")
        self._check_query_rcode(response, name)
        rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
        if rrset is None:
            if _referral_cut(response) is not None:
                return self.read_zone().rrset_at(name, rdtype)
            return []
        return [Record(name, rrset.ttl, rdtype, rdata) for rdata in rrset]

    def types_at(self, name: dns.name.Name) -> set[dns.rdatatype.RdataType]:
        """Which record types (DNSSEC ones left out) exist at `name` now."""
        query = dns.message.make_query(name, dns.rdatatype.ANY)
        response = self._exchange(query, f"looking up {name}")
        self._check_query_rcode(response, name)
        if not response.answer and _referral_cut(response) is not None:
            return {r.rdtype for r in self.read_zone().records if r.name == name}
        return {
            rrset.rdtype
            for rrset in response.answer
            if rrset.name == name and rrset.rdtype not in DNSSEC_TYPES
        }

    def zone_cut_above(self, name: dns.name.Name) -> dns.name.Name | None:
        """The delegation (`sub.alt.` with NS records) at or above `name`, if there is one:
        records there, other than the delegation's NS and its glue, are never served."""
        query = dns.message.make_query(name, dns.rdatatype.A)
        response = self._exchange(query, f"looking up {name}")
        self._check_query_rcode(response, name)
        return _referral_cut(response)

    def _check_query_rcode(self, response: dns.message.Message, name: dns.name.Name) -> None:
        rcode = response.rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return
        if rcode == dns.rcode.REFUSED:
            # An authoritative-only server refuses queries for zones it does not serve.
            raise DnsError(
                "notauth",
                f"the DNS server {self.settings.where} refused a query for {name}: it does not "
                f"serve the zone {self.origin}; check DNS_SERVER and DNS_ZONE",
            )
        raise self._rcode_error(rcode, f"looking up {name}")

    # ---------------------------------------------------------------- changing

    def add(self, record: Record) -> None:
        """Add one record; refuse (before sending) what would break CNAME exclusivity, or what
        named's own checks would refuse."""
        self._check_cname_rules(record, replacing=None)
        self._check_targets(record)
        update = self._update()
        if record.rdtype == dns.rdatatype.CNAME:
            update.absent(record.name)  # a CNAME must be alone at its name
        else:
            update.absent(record.name, dns.rdatatype.CNAME)
        update.add(record.name, record.ttl, record.rdata)
        self.send(update, f"adding {self._describe(record)}")

    def change(self, old: Record, new: Record) -> None:
        """Replace `old` by `new` in one update, if `old`'s RRset is still what was seen."""
        self._check_cname_rules(new, replacing=old)
        self._check_targets(new)
        same_rrset = (new.name, new.rdtype) == (old.name, old.rdtype)

        def build(seen: list[Record]) -> dns.update.UpdateMessage:
            if self._is_last_apex_ns(old, seen) and not same_rrset:
                # named ignores deleting the apex's last NS (RFC 2136 §3.4.2.4) and would answer
                # NOERROR, so the change would be reported while the NS stayed.
                raise RecordInvalid(
                    {
                        "type": "this is the zone's last NS record: it can be changed into "
                        "another NS record, not into another type or name; add another name "
                        "server first"
                    }
                )
            update = self._update()
            update.present(old.name, prerequisite_rdataset(seen))
            if not same_rrset:
                if new.rdtype == dns.rdatatype.CNAME:
                    update.absent(new.name)
                else:
                    update.absent(new.name, dns.rdatatype.CNAME)
            if same_rrset and new.rdata != old.rdata:
                # Add first: deleting first could empty the RRset (for the apex's last NS named
                # ignores that delete, and the old record would stay beside the new one).
                update.add(new.name, new.ttl, new.rdata)
                update.delete(old.name, old.rdata)
            else:
                update.delete(old.name, old.rdata)
                update.add(new.name, new.ttl, new.rdata)
            return update

        self._guarded(
            old, "change", build, f"changing {self._describe(old)} to {self._describe(new)}"
        )

    def delete(self, record: Record) -> None:
        """Delete one record, if its RRset is still what the operator saw."""

        def build(seen: list[Record]) -> dns.update.UpdateMessage:
            if self._is_last_apex_ns(record, seen):
                raise RecordInvalid(
                    {"rdata": "this is the zone's last NS record; add another name server first"}
                )
            update = self._update()
            update.present(record.name, prerequisite_rdataset(seen))
            update.delete(record.name, record.rdata)
            return update

        self._guarded(record, "delete", build, f"deleting {self._describe(record)}")

    def _guarded(
        self,
        record: Record,
        verb: str,
        build: Callable[[list[Record]], dns.update.UpdateMessage],
        what: str,
    ) -> None:
        """Read `record`'s RRset, send the update `build` makes with it as prerequisite; a
        prerequisite failure is retried once with a fresh read, because the read may have come
        from the signed copy a few milliseconds behind (then the second read is current)."""
        deadline = time.monotonic() + SIGNING_LAG_WINDOW_SECONDS
        pause = SIGNING_LAG_PAUSE_SECONDS
        while True:
            seen = self._current_rrset_containing(record, verb)
            try:
                self.send(build(seen), what)
            except DnsError as err:
                if err.kind == "changed" and time.monotonic() + pause < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                raise
            return

    def send(self, update: dns.update.UpdateMessage, what: str) -> None:
        """Send an update over TCP; raise DnsError unless the server answered NOERROR."""
        response = self._exchange(update, what)
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            raise self._rcode_error(rcode, what)

    def update_message(self) -> dns.update.UpdateMessage:
        """A new TSIG-signed update for the zone (for callers building multi-record updates)."""
        return self._update()

    # -------------------------------------------------------------- internals

    def _update(self) -> dns.update.UpdateMessage:
        s = self.settings
        return dns.update.UpdateMessage(
            self.origin,
            keyring=self._keyring,
            keyname=dns.name.from_text(s.key_name) if s.key_name else None,
            keyalgorithm=s.algorithm,
        )

    def _describe(self, record: Record) -> str:
        return f"{record.name} {record.type_text} {record.rdata_text}"

    def _current_rrset_containing(self, record: Record, verb: str) -> list[Record]:
        # With inline signing, queries are answered from the signed copy, which trails an update
        # by a few milliseconds (2-25 ms measured on a 2-core test machine); look again briefly
        # before calling it gone.
        # On a loaded host the lag grows, so the look is bounded by time, not by a try count.
        deadline = time.monotonic() + SIGNING_LAG_WINDOW_SECONDS
        pause = SIGNING_LAG_PAUSE_SECONDS
        while True:
            current = self.lookup(record.name, record.rdtype)
            if any(r.rdata == record.rdata for r in current):
                break
            if time.monotonic() + pause >= deadline:
                raise DnsError(
                    "changed",
                    f"cannot {verb} {self._describe(record)}: the server no longer has it "
                    "(someone else changed or deleted it); reload the zone and try again",
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        return current

    def _is_last_apex_ns(self, record: Record, seen: list[Record]) -> bool:
        return record.rdtype == dns.rdatatype.NS and record.name == self.origin and len(seen) == 1

    def _check_targets(self, record: Record) -> None:
        """named refuses an MX whose exchange is a CNAME (check-mx-cname, RFC 2181 §10.3), and
        an NS whose target inside the zone has no address record (check-integrity)."""
        if record.rdtype == dns.rdatatype.NS:
            ns_target: dns.name.Name = record.rdata.target  # type: ignore[attr-defined]
            if ns_target.is_subdomain(self.origin) and not (
                self.lookup(ns_target, dns.rdatatype.A)
                or self.lookup(ns_target, dns.rdatatype.AAAA)
            ):
                raise RecordInvalid(
                    {
                        "rdata": f"{ns_target} is inside the zone but has no A or AAAA record, "
                        "and named refuses an NS record whose name server it cannot reach "
                        "(check-integrity); add its address first"
                    }
                )
            return
        if record.rdtype != dns.rdatatype.MX:
            return
        target: dns.name.Name = record.rdata.exchange  # type: ignore[attr-defined]
        if target.is_subdomain(self.origin) and dns.rdatatype.CNAME in self.types_at(target):
            raise RecordInvalid(
                {
                    "rdata": f"{target} is a CNAME (an alias), and named refuses MX records that "
                    "point at an alias (RFC 2181 §10.3); point the MX at the alias's target"
                }
            )

    def _check_cname_rules(self, record: Record, replacing: Record | None) -> None:
        present = self.types_at(record.name)
        if replacing is not None and replacing.name == record.name:
            same_rrset_left = any(
                r.rdata != replacing.rdata for r in self.lookup(replacing.name, replacing.rdtype)
            )
            if not same_rrset_left:
                present.discard(replacing.rdtype)
        name = record.name.to_text()
        if record.rdtype == dns.rdatatype.CNAME:
            others = sorted(dns.rdatatype.to_text(t) for t in present)
            if dns.rdatatype.CNAME in present:
                raise RecordInvalid(
                    {"name": f"{name} already has a CNAME; a name can have only one (edit it)"}
                )
            if others:
                raise RecordInvalid(
                    {
                        "name": f"{name} already has {', '.join(others)} records; a CNAME must be "
                        "the only record at its name"
                    }
                )
        elif dns.rdatatype.CNAME in present:
            raise RecordInvalid(
                {
                    "name": f"{name} is a CNAME (an alias); it cannot have {record.type_text} "
                    "records too — add them to the alias target, or delete the CNAME first"
                }
            )

    def _exchange(self, message: dns.message.Message, what: str) -> dns.message.Message:
        s = self.settings
        try:
            return dns.query.tcp(message, s.server, port=s.port, timeout=s.timeout)
        except Exception as err:  # every failure becomes one clear message
            raise self._explain(err, what) from err

    def _explain(self, err: BaseException, what: str) -> DnsError:
        s = self.settings
        where = s.where
        if isinstance(err, dns.tsig.PeerBadKey):
            return DnsError(
                "tsig",
                f"TSIG key rejected by {where} while {what}: the server does not know the key "
                f"{s.key_name!r}; check DNS_TSIG_KEY_NAME matches a `key` in named.conf",
            )
        if isinstance(err, dns.tsig.PeerBadSignature | dns.tsig.BadSignature):
            return DnsError(
                "tsig",
                f"TSIG key rejected by {where} while {what}: the signature did not verify, so "
                f"DNS_TSIG_SECRET (or DNS_TSIG_ALGORITHM {s.algorithm}) differs from the "
                f"server's key {s.key_name!r}",
            )
        if isinstance(err, dns.tsig.PeerBadTime):
            return DnsError(
                "tsig",
                f"TSIG key rejected by {where} while {what}: the clocks of the dashboard and "
                "the server differ by more than the allowed fudge; fix NTP on both",
            )
        if isinstance(err, dns.tsig.PeerError | dns.tsig.BadKey | dns.tsig.BadAlgorithm):
            return DnsError("tsig", f"TSIG key rejected by {where} while {what}: {err}")
        if isinstance(err, dns.xfr.TransferError):
            return self._rcode_error(err.rcode, what)
        if isinstance(err, dns.exception.Timeout | socket.timeout | TimeoutError):
            return DnsError(
                "timeout",
                f"no answer from the DNS server {where} within {s.timeout:g} s while {what}; "
                "check that named runs there and that no firewall drops the traffic",
            )
        if isinstance(err, ConnectionRefusedError):
            return DnsError(
                "unreachable",
                f"the DNS server {where} refused the connection while {what}: named is not "
                "listening there (check DNS_SERVER and DNS_PORT, and that named runs)",
            )
        if isinstance(err, OSError):
            return DnsError(
                "unreachable",
                f"cannot reach the DNS server {where} while {what}: {err.strerror or err}",
            )
        if isinstance(err, EOFError | ConnectionError):
            return DnsError(
                "unreachable",
                f"the DNS server {where} closed the connection while {what}; "
                "its log should say why",
            )
        return DnsError("server", f"unexpected answer from {where} while {what}: {err}")

    def _rcode_error(self, raw_rcode: dns.rcode.Rcode | int, what: str) -> DnsError:
        rcode = dns.rcode.Rcode.make(raw_rcode)
        s = self.settings
        zone = self.origin.to_text()
        code = dns.rcode.to_text(rcode)
        messages = {
            dns.rcode.REFUSED: (
                "refused",
                f"the server refused {what} (REFUSED). named refuses when the TSIG key "
                f"{s.key_name!r} is not allowed to do this for {zone} (the zone's "
                "update-policy or allow-transfer), when the zone is frozen (rndc thaw), or when "
                "a record fails named's own integrity checks (check-names, an MX or NS that "
                "points at an alias); named's log names the reason"
                if s.key_name
                else f"the server refused {what} (REFUSED): the request was not signed; set "
                "DNS_TSIG_KEY_NAME and DNS_TSIG_SECRET to a key the zone's update-policy grants",
            ),
            dns.rcode.NOTAUTH: (
                "notauth",
                f"the server is not authoritative for {zone} or did not accept the TSIG key "
                f"(NOTAUTH) while {what}; check DNS_SERVER points at the zone's primary",
            ),
            dns.rcode.NOTZONE: (
                "notzone",
                f"a name is outside the zone {zone} (NOTZONE) while {what}",
            ),
            dns.rcode.YXDOMAIN: (
                "conflict",
                f"the name is already in use (YXDOMAIN) while {what}: a CNAME must be alone at "
                "its name; someone may have added records meanwhile — reload and check",
            ),
            dns.rcode.YXRRSET: (
                "conflict",
                f"a conflicting record set exists (YXRRSET) while {what}: the name became a "
                "CNAME or got records meanwhile — reload and check",
            ),
            dns.rcode.NXRRSET: (
                "changed",
                f"the records changed on the server since you loaded them (NXRRSET) while "
                f"{what}; reload the zone and make the change again",
            ),
            dns.rcode.NXDOMAIN: (
                "changed",
                f"the name no longer exists on the server (NXDOMAIN) while {what}; reload the zone",
            ),
            dns.rcode.SERVFAIL: (
                "server",
                f"the server failed (SERVFAIL) while {what}; named's log says why (a frozen "
                "zone or a journal problem are common causes)",
            ),
        }
        kind, message = messages.get(rcode, ("server", f"the server answered {code} while {what}"))
        return DnsError(kind, message)


def _referral_cut(response: dns.message.Message) -> dns.name.Name | None:
    """The delegation a non-authoritative answer refers to (its authority NS owner), or None."""
    if response.flags & dns.flags.AA or response.answer:
        return None
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.NS:
            return rrset.name
    return None


def prerequisite_rdataset(records: Iterable[Record]) -> dns.rdataset.Rdataset:
    """An RRset as a value-dependent prerequisite: RFC 2136 wants TTL 0 there (else FORMERR)."""
    items = list(records)
    rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, items[0].rdtype)
    for record in items:
        rdataset.add(record.rdata, 0)
    return rdataset


# ---------------------------------------------------------------------------- rndc


STATUS_FIELDS = {
    "version": "version",
    "boot time": "boot_time",
    "last configured": "last_configured",
    "number of zones": "zones",
    "debug level": "debug_level",
    "xfers running": "transfers_running",
    "xfers deferred": "transfers_deferred",
    "soa queries in progress": "soa_queries",
    "query logging is": "query_logging",
    "recursive clients": "recursive_clients",
    "tcp clients": "tcp_clients",
    "worker threads": "worker_threads",
}


def parse_rndc_status(text: str) -> dict[str, str]:
    """`rndc status` output as a small dict; `running` is "yes" when named says it is up."""
    status: dict[str, str] = {"running": "no"}
    for line in text.splitlines():
        line = line.strip()
        if line == "server is up and running":
            status["running"] = "yes"
            continue
        if line.startswith("query logging is "):
            status["query_logging"] = line.removeprefix("query logging is ").lower()
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip() in STATUS_FIELDS:
            status[STATUS_FIELDS[key.strip()]] = value.strip()
    return status


def server_status(settings: ZoneSettings) -> dict[str, str]:
    """`rndc status` of the zone's server; DnsError("rndc", ...) when it cannot be asked."""
    command = [RNDC_BINARY, "-s", settings.rndc_address, "-p", str(settings.rndc_port)]
    if settings.rndc_key_file:
        command += ["-k", settings.rndc_key_file]
    command.append("status")
    where = f"{settings.rndc_address} port {settings.rndc_port}"
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=settings.timeout + 5,
            check=False,
        )
    except FileNotFoundError:
        raise DnsError(
            "rndc", f"{RNDC_BINARY} is not installed on the dashboard host (bind9-utils)"
        ) from None
    except subprocess.TimeoutExpired:
        raise DnsError(
            "rndc", f"rndc got no answer from {where} within {settings.timeout + 5:g} s"
        ) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {result.returncode}"
        hint = "check RNDC_ADDRESS, RNDC_PORT and that named's `controls` allow this host"
        if "connection refused" in reason:
            hint = "named is not running or its control channel does not listen there"
        elif "bad auth" in reason or "key" in reason:
            hint = "RNDC_KEY_FILE must hold the key named's `controls` statement names"
        raise DnsError("rndc", f"rndc could not reach named at {where}: {reason} ({hint})")
    return parse_rndc_status(result.stdout)
