"""`.alt` names to (address, public key), and the relay set, DNSSEC-validated from the anchor.

The chain is short because every name lives in the `alt.` zone: the anchor (DS or DNSKEY of
`alt.`) authenticates the zone's DNSKEY RRset, whose keys authenticate the AAAA (address) and TXT
(`altmesh-key=BASE64`) RRsets of the name. Anything unsigned, badly signed or signed by another
zone is refused, and so is a key whose hash does not give the address. A wildcard answer counts
only with the NSEC proof that the name asked does not exist (`altmesh.client.denial`).

`resolve_relays()` reads the network's relays the same way from the DNS-SD set the dashboard
publishes (`altmesh.dnsrecords`): `_altmesh._tcp.alt. PTR`, each instance's SRV and TXT, and the
addresses of SRV targets inside the zone.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.asyncbackend
import dns.asyncquery
import dns.dnssec
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from altmesh.client.denial import expanded_from, wildcard_is_proven
from altmesh.config import HostPort
from altmesh.dnsrecords import (
    KEY_TXT_PREFIX,
    RELAY_NAME_PATTERN,
    RELAY_SERVICE_LABELS,
    keys_in_txt,
    relay_names_in_txt,
)
from altmesh.keyfile import encode_public_key
from dns.rdtypes.ANY.RRSIG import RRSIG

log = logging.getLogger("altmesh.client.dns")

ZONE = dns.name.from_text("alt.")
RELAY_SERVICE = dns.name.Name(RELAY_SERVICE_LABELS).concatenate(ZONE)
_RELAY_NAME = re.compile(RELAY_NAME_PATTERN)
# Answers that say this server cannot answer now: another server may.
_SERVER_FAILURES = (dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.NOTIMP, dns.rcode.FORMERR)


class TrustAnchorError(ValueError):
    """A trust anchor line that cannot be parsed as a DS or DNSKEY of `alt.`."""


class ResolveError(Exception):
    """A name that cannot be resolved to authenticated data; `kind` is stable.

    `name` is the name asked for; `detail` says which query failed and how (`alt. DNSKEY:
    127.0.0.1:53 answered SERVFAIL`).
    """

    def __init__(self, kind: str, name: str, detail: str) -> None:
        self.kind = kind
        self.name = name
        self.detail = detail
        super().__init__(f"{name}: {detail}")


@dataclass(frozen=True)
class ResolvedName:
    name: str
    address: ipaddress.IPv6Address
    public_key: bytes
    ttl: int

    @property
    def public_key_b64(self) -> str:
        return encode_public_key(self.public_key)


@dataclass(frozen=True)
class RelayTarget:
    """One SRV record of a relay: where it is reached."""

    priority: int
    weight: int
    port: int
    target: str  # host name, without the trailing dot
    # DNSSEC-validated addresses of a target inside the zone. Empty for a target outside it
    # (resolve it as any host name): the relay's key, validated, authenticates the relay.
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    in_zone: bool


@dataclass(frozen=True)
class RelayRecord:
    """A relay of the network's DNS-SD set, every part DNSSEC-validated."""

    name: str  # its `relay=` name, also its instance label
    instance: str  # `<name>._altmesh._tcp.alt.`
    public_keys: tuple[bytes, ...]  # from `altmesh-key=`; more than one during a key rotation
    targets: tuple[RelayTarget, ...]  # by priority, then by weight (highest first)
    ttl: int

    @property
    def public_key(self) -> bytes:
        return self.public_keys[0]


@dataclass(frozen=True)
class SkippedRelay:
    """A DNS-SD instance that was not used, and why."""

    instance: str
    kind: str  # a ResolveError kind
    detail: str


@dataclass(frozen=True)
class RelaySet:
    relays: tuple[RelayRecord, ...]
    skipped: tuple[SkippedRelay, ...]  # instances that failed validation: never used


@dataclass(frozen=True)
class TrustAnchors:
    ds: tuple[dns.rdata.Rdata, ...]
    dnskeys: tuple[dns.rdata.Rdata, ...]


_BIND_ANCHOR_WORDS = {
    "static-key": "DNSKEY",
    "initial-key": "DNSKEY",
    "static-ds": "DS",
    "initial-ds": "DS",
}


def parse_trust_anchors(lines: Iterable[str]) -> TrustAnchors:
    """Parse `alt. [TTL] [IN] DS|DNSKEY RDATA` lines (or BIND `trust-anchors` entries)."""
    ds: list[dns.rdata.Rdata] = []
    keys: list[dns.rdata.Rdata] = []
    for number, raw_line in enumerate(lines, 1):
        for line in raw_line.replace(";", "\n;").splitlines():
            text = line.strip().rstrip(";").strip()
            if not text or text.startswith(";"):
                continue
            tokens = text.replace('"', " ").split()
            if len(tokens) < 3:
                raise TrustAnchorError(f"anchor {number}: {text!r} is too short")
            try:
                owner = dns.name.from_text(tokens[0])
            except dns.exception.DNSException:
                raise TrustAnchorError(f"anchor {number}: bad owner name {tokens[0]!r}") from None
            if owner != ZONE:
                raise TrustAnchorError(f"anchor {number}: owner is {owner}, must be alt.")
            rest = tokens[1:]
            if rest[0].lower() in _BIND_ANCHOR_WORDS:
                rtype = _BIND_ANCHOR_WORDS[rest[0].lower()]
                rest = rest[1:]
            else:
                if rest and rest[0].isdigit():
                    rest = rest[1:]  # TTL
                if rest and rest[0].upper() == "IN":
                    rest = rest[1:]
                if not rest:
                    raise TrustAnchorError(f"anchor {number}: record type is missing")
                rtype = rest[0].upper()
                rest = rest[1:]
            if rtype not in ("DS", "DNSKEY"):
                raise TrustAnchorError(f"anchor {number}: type {rtype} is not DS or DNSKEY")
            try:
                rdata = dns.rdata.from_text(
                    dns.rdataclass.IN, dns.rdatatype.from_text(rtype), " ".join(rest)
                )
            except (dns.exception.DNSException, ValueError) as err:
                raise TrustAnchorError(f"anchor {number}: bad {rtype} data: {err}") from None
            (ds if rtype == "DS" else keys).append(rdata)
    if not ds and not keys:
        raise TrustAnchorError("no DS or DNSKEY record for alt. was given")
    return TrustAnchors(tuple(ds), tuple(keys))


def _anchor_matches(anchors: TrustAnchors, key: dns.rdata.Rdata) -> bool:
    if key in anchors.dnskeys:
        return True
    for ds in anchors.ds:
        try:
            digest = dns.dnssec.make_ds(ZONE, key, ds.digest_type)  # type: ignore[attr-defined]
        except (dns.exception.DNSException, ValueError):
            continue
        if digest == ds:
            return True
    return False


class AltResolver:
    """Validating stub resolver for the `alt.` zone (async, dnspython)."""

    def __init__(
        self,
        servers: Sequence[HostPort],
        anchors: TrustAnchors,
        prefix: ipaddress.IPv6Network,
        timeout: float = 3.0,
    ) -> None:
        if not servers:
            raise ValueError("at least one DNS server is needed")
        self.servers = list(servers)
        self.anchors = anchors
        self.prefix = prefix
        self.timeout = timeout
        self._zone_keys: tuple[dns.rrset.RRset, float] | None = None
        self._cache: dict[str, tuple[ResolvedName, float]] = {}

    # ------------------------------------------------------------------ one query

    async def _exchange(
        self, asked: str, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[dns.message.Message, HostPort]:
        """The first usable answer of the servers, in order, and the server that gave it."""
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.CD  # we validate ourselves; a server must not hide bogus data
        what = _what(name, rdtype)
        failures: list[str] = []
        for server in self.servers:
            try:
                response = await self._udp(query, server)
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(
                        query, server.host, port=server.port, timeout=self.timeout
                    )
            except dns.exception.Timeout:
                failures.append(f"{server}: no answer within {self.timeout:g} s")
                continue
            except ConnectionRefusedError:
                failures.append(f"{server}: connection refused (no DNS server on that port)")
                continue
            except OSError as err:
                failures.append(f"{server}: {err.strerror or err}")
                continue
            except dns.exception.DNSException as err:
                failures.append(f"{server}: bad answer: {err}")
                continue
            if response.rcode() in _SERVER_FAILURES:
                failures.append(f"{server} answered {dns.rcode.to_text(response.rcode())}")
                continue
            return response, server
        kind = "dns_error" if all(" answered " in f for f in failures) else "dns_unreachable"
        raise ResolveError(kind, asked, f"{what}: {'; '.join(failures)}")

    async def _udp(self, query: dns.message.Message, server: HostPort) -> dns.message.Message:
        """One UDP exchange that waits for the real answer.

        A datagram that is not the answer (garbage, another query's ID, another source) is
        ignored until the timeout, so a stray or spoofed packet cannot fail the lookup. The
        socket is connected, so a closed port is reported as refused instead of timing out.
        """
        family = dns.inet.af_for_address(server.host)
        destination = dns.inet.low_level_address_tuple((server.host, server.port), family)
        backend = dns.asyncbackend.get_default_backend()
        sock = await backend.make_socket(  # type: ignore[no-untyped-call]
            family, socket.SOCK_DGRAM, 0, None, destination
        )
        async with sock:
            return await dns.asyncquery.udp(
                query,
                server.host,
                timeout=self.timeout,
                port=server.port,
                sock=sock,
                ignore_unexpected=True,
                ignore_errors=True,
            )

    # ------------------------------------------------------------------ validated RRsets

    async def zone_keys(self, asked: str = "alt.") -> dns.rrset.RRset:
        """The `alt.` DNSKEY RRset, validated with a key the anchor vouches for."""
        now = time.monotonic()
        if self._zone_keys and self._zone_keys[1] > now:
            return self._zone_keys[0]
        response, server = await self._exchange(asked, ZONE, dns.rdatatype.DNSKEY)
        what = "alt. DNSKEY"
        if response.rcode() != dns.rcode.NOERROR:
            raise ResolveError(
                "dnssec_bogus",
                asked,
                f"{what}: {server} answered {dns.rcode.to_text(response.rcode())}",
            )
        keys = response.get_rrset(response.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        if keys is None:
            raise ResolveError("dnssec_bogus", asked, f"{what}: the answer of {server} has none")
        sigs = response.get_rrset(
            response.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY
        )
        if sigs is None:
            raise ResolveError("dnssec_unsigned", asked, f"{what}: the RRset is not signed")
        trusted = [key for key in keys if _anchor_matches(self.anchors, key)]
        if not trusted:
            raise ResolveError(
                "dnssec_bogus", asked, f"{what}: no key matches the pinned trust anchor"
            )
        anchor_set = dns.rrset.from_rdata_list(ZONE, keys.ttl, trusted)
        try:
            dns.dnssec.validate(keys, sigs, {ZONE: anchor_set})
        except dns.exception.ValidationFailure as err:
            raise ResolveError("dnssec_bogus", asked, f"{what}: {err}") from None
        self._zone_keys = (keys, now + min(keys.ttl, 3600))
        return keys

    async def _validated(
        self,
        asked: str,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        *,
        required: bool = True,
    ) -> dns.rrset.RRset | None:
        """The RRset, validated; None when the name or type is absent and not `required`."""
        keys = await self.zone_keys(asked)
        response, server = await self._exchange(asked, name, rdtype)
        what = _what(name, rdtype)
        if response.rcode() == dns.rcode.NXDOMAIN:
            if not required:
                return None
            raise ResolveError("not_found", asked, f"{what}: no such name in the alt. zone")
        if response.rcode() != dns.rcode.NOERROR:
            raise ResolveError(
                "dns_error",
                asked,
                f"{what}: {server} answered {dns.rcode.to_text(response.rcode())}",
            )
        rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
        if rrset is None:
            if not required:
                return None
            raise ResolveError(
                "not_found", asked, f"{what}: {name} has no {dns.rdatatype.to_text(rdtype)} record"
            )
        sigs = response.get_rrset(
            response.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype
        )
        if sigs is None:
            raise ResolveError("dnssec_unsigned", asked, f"{what}: the RRset is not signed")
        self._check_signatures(asked, what, response, rrset, sigs, keys)
        return rrset

    def _check_signatures(
        self,
        asked: str,
        what: str,
        response: dns.message.Message,
        rrset: dns.rrset.RRset,
        sigs: dns.rrset.RRset,
        keys: dns.rrset.RRset,
    ) -> None:
        """One signature must validate: over the RRset at its own name, or over a wildcard
        whose expansion to this name the response proves (see altmesh.client.denial)."""
        failures: list[str] = []
        for rrsig in sigs:
            assert isinstance(rrsig, RRSIG)
            try:
                dns.dnssec.validate_rrsig(rrset, rrsig, {ZONE: keys})
            except dns.exception.ValidationFailure as err:
                failures.append(str(err))
                continue
            wildcard = expanded_from(rrset.name, rrsig)
            if wildcard is None:
                return
            if wildcard_is_proven(response, rrset.name, wildcard, keys, ZONE):
                return
            failures.append(
                f"the answer is {wildcard} expanded, without a proof (NSEC) that {rrset.name} "
                "does not exist"
            )
        raise ResolveError("dnssec_bogus", asked, f"{what}: {'; '.join(failures)}")

    # ------------------------------------------------------------------ names

    async def resolve(self, name: str) -> ResolvedName:
        """Authenticated (address, key) of a `.alt` name; ResolveError if anything fails."""
        from altmesh.protocol.address import address_matches

        key = name.rstrip(".").lower()
        cached = self._cache.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        try:
            qname = dns.name.from_text(key + ".")
        except dns.exception.DNSException as err:
            raise ResolveError("bad_name", name, f"not a DNS name: {err}") from None
        if not qname.is_subdomain(ZONE) or qname == ZONE:
            raise ResolveError("bad_name", name, "is not a name under .alt")
        aaaa = await self._validated(key, qname, dns.rdatatype.AAAA)
        txt = await self._validated(key, qname, dns.rdatatype.TXT)
        assert aaaa is not None and txt is not None
        found = keys_in_txt(record.strings for record in txt)
        for problem in found.problems:
            log.warning("%s: ignoring a TXT key record that is not a key: %s", key, problem)
        if not found.keys:
            detail = f"{qname} TXT: no valid '{KEY_TXT_PREFIX}BASE64' record"
            if found.problems:
                detail += f" ({found.problems[0]})"
            raise ResolveError("bad_key", key, detail)
        addresses = [ipaddress.IPv6Address(r.address) for r in aaaa]
        for address in addresses:
            for public in found.keys:
                if address_matches(address, self.prefix, public):
                    result = ResolvedName(key, address, public, min(aaaa.ttl, txt.ttl))
                    self._cache[key] = (result, time.monotonic() + min(result.ttl, 300))
                    return result
        raise ResolveError(
            "address_mismatch",
            key,
            "the TXT key does not match the AAAA address (address is not derived from the key)",
        )

    # ------------------------------------------------------------------ the relay set

    async def resolve_relays(self) -> RelaySet:
        """The network's relays from the DNS-SD set, each instance validated in full.

        Raises ResolveError when the `_altmesh._tcp.alt. PTR` set itself cannot be read and
        validated. An absent PTR set gives no relays; it is not authenticated (denials are not
        checked), so treat it as "no news" and keep the relays known already. Instances that
        fail validation are skipped (logged and listed in `skipped`), never used.
        """
        asked = RELAY_SERVICE.to_text()
        ptr = await self._validated(asked, RELAY_SERVICE, dns.rdatatype.PTR, required=False)
        if ptr is None:
            return RelaySet((), ())
        instances = sorted({rdata.target for rdata in ptr})
        results = await asyncio.gather(
            *(self._relay_instance(instance) for instance in instances), return_exceptions=True
        )
        relays: list[RelayRecord] = []
        skipped: list[SkippedRelay] = []
        for instance, result in zip(instances, results, strict=True):
            if isinstance(result, RelayRecord):
                relays.append(result)
            elif isinstance(result, ResolveError):
                log.warning("relay set: skipping %s: %s (%s)", instance, result.detail, result.kind)
                skipped.append(SkippedRelay(instance.to_text(), result.kind, result.detail))
            else:
                raise result
        return RelaySet(tuple(relays), tuple(skipped))

    async def _relay_instance(self, instance: dns.name.Name) -> RelayRecord:
        asked = instance.to_text()
        if len(instance) != len(RELAY_SERVICE) + 1 or not instance.is_subdomain(RELAY_SERVICE):
            raise ResolveError("bad_relay_record", asked, f"is not an instance of {RELAY_SERVICE}")
        label = instance.labels[0].decode("ascii", "replace")
        srv, txt = await asyncio.gather(
            self._validated(asked, instance, dns.rdatatype.SRV),
            self._validated(asked, instance, dns.rdatatype.TXT),
        )
        assert srv is not None and txt is not None
        strings = [record.strings for record in txt]
        names = relay_names_in_txt(strings)
        if names != (label,) or not _RELAY_NAME.match(label):
            raise ResolveError(
                "bad_relay_record",
                asked,
                f"TXT: 'relay=' must name the instance ({label!r}) once, found {list(names)}",
            )
        found = keys_in_txt(strings)
        for problem in found.problems:
            log.warning("%s: ignoring a TXT key string that is not a key: %s", asked, problem)
        if not found.keys:
            raise ResolveError("bad_key", asked, f"TXT: no valid '{KEY_TXT_PREFIX}BASE64' string")
        ordered = sorted(srv, key=lambda r: (r.priority, -r.weight, r.port, r.target))
        targets = await asyncio.gather(*(self._relay_target(asked, record) for record in ordered))
        usable = tuple(target for target in targets if target is not None)
        if not usable:
            raise ResolveError("no_endpoint", asked, "no SRV target with an address")
        return RelayRecord(label, asked, found.keys, usable, min(srv.ttl, txt.ttl))

    async def _relay_target(self, asked: str, record: object) -> RelayTarget | None:
        target: dns.name.Name = record.target  # type: ignore[attr-defined]
        if target == dns.name.root:
            return None  # RFC 2782: "." means the service is not available there
        in_zone = target.is_subdomain(ZONE)
        addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        if in_zone:
            for rdtype in (dns.rdatatype.AAAA, dns.rdatatype.A):
                rrset = await self._validated(asked, target, rdtype, required=False)
                addresses.extend(ipaddress.ip_address(r.address) for r in rrset or ())
            if not addresses:
                log.warning("%s: SRV target %s has no address; skipped", asked, target)
                return None
        return RelayTarget(
            priority=int(record.priority),  # type: ignore[attr-defined]
            weight=int(record.weight),  # type: ignore[attr-defined]
            port=int(record.port),  # type: ignore[attr-defined]
            target=target.to_text(omit_final_dot=True),
            addresses=tuple(addresses),
            in_zone=in_zone,
        )


def _what(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> str:
    return f"{name} {dns.rdatatype.to_text(rdtype)}"
