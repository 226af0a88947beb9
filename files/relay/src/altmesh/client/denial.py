"""Whether a DNSSEC-signed wildcard answer may stand for the name asked (RFC 4035 §5.3.4).

A signature over `*.alt. AAAA` validates for any owner name the wildcard could expand to, so an
on-path attacker can copy a wildcard's records and signature into the answer for a name that
exists with other records (`data.alt.`). An answer that is a wildcard expansion is therefore
accepted only with a validated NSEC record proving that the name asked does not exist and that
the wildcard's parent is the closest name that does.

Only NSEC proofs are checked: BIND's `dnssec-policy default`, which the bind_alt role uses, signs
with NSEC. A wildcard answer from a zone signed with NSEC3 has no proof this code accepts and is
refused.
"""

from __future__ import annotations

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.RRSIG import RRSIG


def label_count(name: dns.name.Name) -> int:
    """The RRSIG `labels` value of an owner name: labels without the root and a leading `*`."""
    count = len(name) - 1
    return count - 1 if name.is_wild() else count


def expanded_from(owner: dns.name.Name, rrsig: RRSIG) -> dns.name.Name | None:
    """The wildcard `owner` was expanded from according to `rrsig`, or None if it was not."""
    labels = int(rrsig.labels)
    if labels >= label_count(owner):
        return None
    return dns.name.Name((b"*", *owner.labels[-(labels + 1) :]))


def _common_ancestor(a: dns.name.Name, b: dns.name.Name) -> dns.name.Name:
    _relation, _order, common = a.fullcompare(b)
    return dns.name.Name(a.labels[-common:]) if common else dns.name.root


def _types(rdata: object) -> set[str]:
    return set(str(rdata).split()[1:])


def nsec_proves_wildcard(
    owner: dns.name.Name,
    next_name: dns.name.Name,
    types: set[str],
    qname: dns.name.Name,
    wildcard: dns.name.Name,
) -> bool:
    """Whether `owner NSEC next_name` proves that `qname` does not exist and that `wildcard`
    (`*.<closest encloser>`) is the wildcard that answers for it."""
    if not owner < qname:
        return False
    last_in_chain = next_name <= owner  # the last NSEC of the zone points back to the apex
    if not (qname < next_name or last_in_chain):
        return False
    if next_name.is_subdomain(qname):
        return False  # a name below qname exists, so qname exists (an empty non-terminal)
    if qname.is_subdomain(owner) and ("DNAME" in types or ("NS" in types and "SOA" not in types)):
        return False  # names below a delegation or DNAME are not this zone's to deny
    closest = max(_common_ancestor(qname, owner), _common_ancestor(qname, next_name), key=len)
    encloser = dns.name.Name(wildcard.labels[1:])
    return bool(closest == encloser)


def wildcard_is_proven(
    response: dns.message.Message,
    qname: dns.name.Name,
    wildcard: dns.name.Name,
    keys: dns.rrset.RRset,
    zone: dns.name.Name,
) -> bool:
    """Whether the authority section holds a validated NSEC proof for this wildcard answer."""
    for rrset in response.authority:
        if rrset.rdtype != dns.rdatatype.NSEC or not rrset.name.is_subdomain(zone):
            continue
        try:
            sigs = response.find_rrset(
                response.authority,
                rrset.name,
                dns.rdataclass.IN,
                dns.rdatatype.RRSIG,
                dns.rdatatype.NSEC,
            )
        except KeyError:
            continue
        if not any(_validates_as_is(rrset, sig, keys, zone) for sig in sigs):
            continue
        for rdata in rrset:
            if nsec_proves_wildcard(
                rrset.name,
                rdata.next,
                _types(rdata),
                qname,
                wildcard,
            ):
                return True
    return False


def _validates_as_is(
    rrset: dns.rrset.RRset, rrsig: RRSIG, keys: dns.rrset.RRset, zone: dns.name.Name
) -> bool:
    """A signature over the RRset at its own owner name (an NSEC is never a wildcard expansion)."""
    if expanded_from(rrset.name, rrsig) is not None:
        return False
    try:
        dns.dnssec.validate_rrsig(rrset, rrsig, {zone: keys})
    except dns.exception.ValidationFailure:
        return False
    return True
