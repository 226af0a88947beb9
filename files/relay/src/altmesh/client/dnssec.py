"""Resolve `NAME.alt` to (address, public key) with DNSSEC validated from the pinned `alt.` anchor.

The chain is short because every name lives in the `alt.` zone: the anchor (DS or DNSKEY of
`alt.`) authenticates the zone's DNSKEY RRset, whose keys authenticate the AAAA (address) and TXT
(`altmesh-key=BASE64`) RRsets of the name. Anything unsigned, badly signed or signed by another
zone is refused, and so is a key whose hash does not give the address.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from altmesh.config import HostPort
from altmesh.keyfile import decode_public_key, encode_public_key

ZONE = dns.name.from_text("alt.")
KEY_TXT_PREFIX = "altmesh-key="


class TrustAnchorError(ValueError):
    """A trust anchor line that cannot be parsed as a DS or DNSKEY of `alt.`."""


class ResolveError(Exception):
    """A name that cannot be resolved to an authenticated address and key; `kind` is stable."""

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

    async def _query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.CD  # we validate ourselves; a server must not hide bogus data
        last_error: Exception | None = None
        for server in self.servers:
            try:
                response = await dns.asyncquery.udp(
                    query, server.host, port=server.port, timeout=self.timeout
                )
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(
                        query, server.host, port=server.port, timeout=self.timeout
                    )
                return response
            except (dns.exception.DNSException, OSError) as err:
                last_error = err
        raise ResolveError("dns_unreachable", str(name), f"no DNS server answered: {last_error}")

    def _signed_rrset(
        self, response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[dns.rrset.RRset, dns.rrset.RRset] | None:
        try:
            rrset = response.find_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
        except KeyError:
            return None
        try:
            sigs = response.find_rrset(
                response.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype
            )
        except KeyError:
            raise ResolveError(
                "dnssec_unsigned", str(name), f"{dns.rdatatype.to_text(rdtype)} is not signed"
            ) from None
        return rrset, sigs

    async def zone_keys(self) -> dns.rrset.RRset:
        """The `alt.` DNSKEY RRset, validated with a key the anchor vouches for."""
        now = time.monotonic()
        if self._zone_keys and self._zone_keys[1] > now:
            return self._zone_keys[0]
        response = await self._query(ZONE, dns.rdatatype.DNSKEY)
        signed = self._signed_rrset(response, ZONE, dns.rdatatype.DNSKEY)
        if signed is None:
            raise ResolveError("dnssec_bogus", "alt.", "no DNSKEY RRset for alt.")
        keys, sigs = signed
        trusted = [key for key in keys if _anchor_matches(self.anchors, key)]
        if not trusted:
            raise ResolveError(
                "dnssec_bogus", "alt.", "no alt. DNSKEY matches the pinned trust anchor"
            )
        anchor_set = dns.rrset.from_rdata_list(ZONE, keys.ttl, trusted)
        try:
            dns.dnssec.validate(keys, sigs, {ZONE: anchor_set})
        except dns.exception.ValidationFailure as err:
            raise ResolveError("dnssec_bogus", "alt.", f"DNSKEY RRset: {err}") from None
        self._zone_keys = (keys, now + min(keys.ttl, 3600))
        return keys

    async def _validated(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.rrset.RRset:
        keys = await self.zone_keys()
        response = await self._query(name, rdtype)
        if response.rcode() == dns.rcode.NXDOMAIN:
            raise ResolveError("not_found", str(name), "no such name in the alt. zone")
        if response.rcode() != dns.rcode.NOERROR:
            raise ResolveError(
                "dns_error", str(name), f"server answered {dns.rcode.to_text(response.rcode())}"
            )
        signed = self._signed_rrset(response, name, rdtype)
        if signed is None:
            raise ResolveError(
                "not_found", str(name), f"has no {dns.rdatatype.to_text(rdtype)} record"
            )
        rrset, sigs = signed
        try:
            dns.dnssec.validate(rrset, sigs, {ZONE: keys})
        except dns.exception.ValidationFailure as err:
            raise ResolveError(
                "dnssec_bogus", str(name), f"{dns.rdatatype.to_text(rdtype)} signature: {err}"
            ) from None
        return rrset

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
        aaaa = await self._validated(qname, dns.rdatatype.AAAA)
        txt = await self._validated(qname, dns.rdatatype.TXT)
        keys: list[bytes] = []
        for record in txt:
            # One string per key=value (DNS-SD style) or the whole record as one string.
            strings = [bytes(part) for part in record.strings]
            texts = {part.decode("ascii", "replace") for part in [*strings, b"".join(strings)]}
            for text in sorted(texts):
                if text.startswith(KEY_TXT_PREFIX):
                    try:
                        keys.append(decode_public_key(text[len(KEY_TXT_PREFIX) :]))
                    except ValueError as err:
                        raise ResolveError("bad_key", name, f"TXT key: {err}") from None
        if not keys:
            raise ResolveError("bad_key", name, f"no TXT record '{KEY_TXT_PREFIX}BASE64'")
        addresses = [ipaddress.IPv6Address(r.address) for r in aaaa]
        for address in addresses:
            for public in keys:
                if address_matches(address, self.prefix, public):
                    result = ResolvedName(key, address, public, min(aaaa.ttl, txt.ttl))
                    self._cache[key] = (result, time.monotonic() + min(result.ttl, 300))
                    return result
        raise ResolveError(
            "address_mismatch",
            name,
            "the TXT key does not match the AAAA address (address is not derived from the key)",
        )
