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


def _quote_txt(text: str) -> str:
    """Let operators type TXT data plainly: unquoted input becomes one string, not one per word."""
    stripped = text.strip()
    if stripped.startswith('"'):
        return stripped
    escaped = stripped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


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
            data_text = _quote_txt(data_text)
        try:
            parsed = dns.rdata.from_text(
                dns.rdataclass.IN, type_value, data_text, origin=origin, relativize=False
            )
        except (dns.exception.DNSException, ValueError) as err:
            errors["rdata"] = (
                f"not valid {type_text} data ({_describe_parse_error(type_text, err)})"
            )
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
        """The RRset `name`/`rdtype` as the server answers it now (TCP, authoritative)."""
        query = dns.message.make_query(name, rdtype)
        response = self._exchange(query, f"looking up {name} {dns.rdatatype.to_text(rdtype)}")
        self._check_query_rcode(response, name)
        rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
        if rrset is None:
            return []
        return [Record(name, rrset.ttl, rdtype, rdata) for rdata in rrset]

    def types_at(self, name: dns.name.Name) -> set[dns.rdatatype.RdataType]:
        """Which record types (DNSSEC ones left out) exist at `name` now."""
        query = dns.message.make_query(name, dns.rdatatype.ANY)
        response = self._exchange(query, f"looking up {name}")
        self._check_query_rcode(response, name)
        return {
            rrset.rdtype
            for rrset in response.answer
            if rrset.name == name and rrset.rdtype not in DNSSEC_TYPES
        }

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
        """Add one record; refuse (before sending) what would break CNAME exclusivity."""
        self._check_cname_rules(record, replacing=None)
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

        def build(seen: list[Record]) -> dns.update.UpdateMessage:
            update = self._update()
            update.present(old.name, prerequisite_rdataset(seen))
            if (new.name, new.rdtype) != (old.name, old.rdtype):
                if new.rdtype == dns.rdatatype.CNAME:
                    update.absent(new.name)
                else:
                    update.absent(new.name, dns.rdatatype.CNAME)
            update.delete(old.name, old.rdata)
            update.add(new.name, new.ttl, new.rdata)
            return update

        self._guarded(
            old, "change", build, f"changing {self._describe(old)} to {self._describe(new)}"
        )

    def delete(self, record: Record) -> None:
        """Delete one record, if its RRset is still what the operator saw."""

        def build(seen: list[Record]) -> dns.update.UpdateMessage:
            if record.rdtype == dns.rdatatype.NS and record.name == self.origin and len(seen) == 1:
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
        # by a few milliseconds (FACTS.md: 2-25 ms); look again briefly before calling it gone.
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
                f"the server refused {what} (REFUSED): the TSIG key {s.key_name!r} is not "
                f"allowed to do this for {zone} (check the zone's update-policy and "
                "allow-transfer), or the zone is frozen (rndc thaw)"
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
