"""The relays a client or service may join: the configured `[[relays]]` and the DNS-SD set.

The configured relays are the bootstrap: they are known before any DNS answer and stay
candidates when DNS has none. The DNS-SD set (`AltResolver.resolve_relays()`, every record
DNSSEC-validated) adds the network's other relays with their SRV priority and weight. A relay in
both (the same key) is one candidate with the endpoints of both, configured ones first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from altmesh.client.dnssec import RelayRecord
from altmesh.config import HostPort, RelayEndpoint
from altmesh.keyfile import decode_public_key, encode_public_key


@dataclass(frozen=True)
class RelayCandidate:
    """One relay: the key its link handshake must prove, and where it is reached."""

    key: bytes  # the static key the link handshake is made to
    name: str  # its DNS-SD name, or its configured name or first address for a configured relay
    endpoints: tuple[HostPort, ...]  # tried in order
    priority: int | None = None  # SRV priority (lower is preferred); None: configured only
    weight: int | None = None  # SRV weight (the dashboard lowers it with load); None: configured
    configured: bool = False  # listed in [[relays]]
    discovered: bool = False  # in the DNS-SD relay set

    @property
    def key_b64(self) -> str:
        return encode_public_key(self.key)

    @property
    def sources(self) -> str:
        return "+".join(
            word
            for word, present in (("config", self.configured), ("dns", self.discovered))
            if present
        )


def configured_candidates(relays: Sequence[RelayEndpoint]) -> list[RelayCandidate]:
    """`[[relays]]` as candidates, in file order; entries with one key are one relay, named by
    the first entry's `name` (else its address)."""
    by_key: dict[bytes, RelayCandidate] = {}
    for relay in relays:
        key = decode_public_key(relay.public_key)
        known = by_key.get(key)
        if known is None:
            name = relay.name or str(relay.address)
            by_key[key] = RelayCandidate(key, name, (relay.address,), configured=True)
        elif relay.address not in known.endpoints:
            by_key[key] = RelayCandidate(
                key, known.name, (*known.endpoints, relay.address), configured=True
            )
    return list(by_key.values())


def discovered_candidate(record: RelayRecord) -> RelayCandidate | None:
    """A validated DNS-SD relay as a candidate (None when no target gives an endpoint)."""
    endpoints: list[HostPort] = []
    for target in record.targets:
        if target.addresses:
            hosts = [str(address) for address in target.addresses]
        else:  # outside the zone: resolved as any host name; the key authenticates the relay
            hosts = [target.target]
        for host in hosts:
            endpoint = HostPort(host, target.port)
            if endpoint not in endpoints:
                endpoints.append(endpoint)
    if not endpoints:
        return None
    best = record.targets[0]  # ordered by priority, then weight
    return RelayCandidate(
        record.public_key,
        record.name,
        tuple(endpoints),
        priority=best.priority,
        weight=best.weight,
        discovered=True,
    )


def merge_candidates(
    configured: Sequence[RelayCandidate], records: Iterable[RelayRecord], limit: int
) -> tuple[RelayCandidate, ...]:
    """Configured relays first (in file order), then discovered ones by priority and weight;
    at most `limit` (configured relays always stay: they are the bootstrap)."""
    merged = {candidate.key: candidate for candidate in configured}
    discovered: list[RelayCandidate] = []
    for record in records:
        candidate = discovered_candidate(record)
        if candidate is None:
            continue
        known = next((merged[key] for key in record.public_keys if key in merged), None)
        if known is None:
            if all(other.key != candidate.key for other in discovered):
                discovered.append(candidate)
            continue
        # The configured relay, seen in DNS: its SRV priority and weight count, and DNS's
        # endpoints are tried after the configured ones.
        extra = tuple(e for e in candidate.endpoints if e not in known.endpoints)
        endpoints = (*known.endpoints, *extra)
        merged[known.key] = RelayCandidate(
            known.key,
            candidate.name,
            endpoints,
            priority=candidate.priority,
            weight=candidate.weight,
            configured=True,
            discovered=True,
        )
    discovered.sort(key=lambda c: (c.priority or 0, -(c.weight or 0), c.name))
    room = max(0, limit - len(merged))
    return (*merged.values(), *discovered[:room])
