"""Relay discovery from the DNS-SD set in a real signed zone, laid out as the dashboard publishes it
(docs/dashboard-dns.md, "Relays in DNS"): valid instances are returned, bad ones skipped."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterator

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from altmesh.client.dnssec import (
    AltResolver,
    RelaySet,
    RelayTarget,
    ResolveError,
    parse_trust_anchors,
)
from altmesh.config import HostPort
from altmesh.dnsrecords import key_txt, relay_instance_txt, txt_presentation
from altmesh.protocol import StaticKeyPair, network_prefix, node_address
from altmesh.testing.named import NamedServer

from .dns_proxy import DnsProxy
from .helpers import PREFIX

PREFIX_NET = network_prefix(PREFIX)
R1, R2, ATTACKER = (StaticKeyPair.generate() for _ in range(3))


def relay_records(name: str, key: bytes, srv: list[str], addresses: list[str]) -> list[str]:
    """What the dashboard publishes for one relay (its shared SRVs omitted where not needed)."""
    instance = f"{name}._altmesh._tcp"
    return [
        f"{name} 60 IN AAAA {node_address(PREFIX_NET, key)}",
        f"{name} 60 IN TXT {txt_presentation(key_txt(key))}",
        f"_altmesh._tcp 60 IN PTR {instance}",
        *(f"_altmesh._tcp 60 IN SRV {record}" for record in srv),
        *(f"{instance} 60 IN SRV {record}" for record in srv),
        f"{instance} 60 IN TXT {txt_presentation(*relay_instance_txt(name, key))}",
        *addresses,
    ]


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    bad_key = '"txtvers=1" "relay=badkey" "altmesh-key=not-a-key"'
    records = [
        *relay_records(
            "r1",
            R1.public,
            ["0 100 7000 ep0.r1", "0 50 7001 relay1.example.net."],
            ["ep0.r1 60 IN A 192.0.2.10"],
        ),
        *relay_records(
            "r2",
            R2.public,
            ["1 10 7400 ep0.r2", "0 100 7401 ep1.r2"],
            ["ep0.r2 60 IN AAAA 2001:db8::2", "ep1.r2 60 IN A 192.0.2.21"],
        ),
        # Published wrongly, each in one way: these must be skipped, never used.
        "_altmesh._tcp 60 IN PTR badkey._altmesh._tcp",
        "badkey._altmesh._tcp 60 IN SRV 0 100 7000 ep0.r1",
        f"badkey._altmesh._tcp 60 IN TXT {bad_key}",
        "_altmesh._tcp 60 IN PTR misnamed._altmesh._tcp",
        "misnamed._altmesh._tcp 60 IN SRV 0 100 7000 ep0.r1",
        "misnamed._altmesh._tcp 60 IN TXT "
        + txt_presentation(*relay_instance_txt("r1", R1.public)),
        "_altmesh._tcp 60 IN PTR noaddress._altmesh._tcp",
        "noaddress._altmesh._tcp 60 IN SRV 0 100 7000 ep0.noaddress",
        "noaddress._altmesh._tcp 60 IN TXT "
        + txt_presentation(*relay_instance_txt("noaddress", R1.public)),
        "_altmesh._tcp 60 IN PTR gone._altmesh._tcp",
    ]
    with NamedServer.start(tmp_path_factory.mktemp("dns-relays"), records=records) as server:
        yield server


def relays(port: int, named: NamedServer) -> RelaySet:
    resolver = AltResolver(
        [HostPort("127.0.0.1", port)],
        parse_trust_anchors([named.trust_anchor]),
        PREFIX_NET,
        timeout=2,
    )
    return asyncio.run(resolver.resolve_relays())


def test_the_relay_set_gives_each_relays_key_and_endpoints(named: NamedServer) -> None:
    found = relays(named.port, named)
    by_name = {relay.name: relay for relay in found.relays}
    assert sorted(by_name) == ["r1", "r2"]
    r1, r2 = by_name["r1"], by_name["r2"]
    assert (r1.instance, r1.public_key, r1.ttl) == ("r1._altmesh._tcp.alt.", R1.public, 60)
    assert r1.targets == (
        RelayTarget(0, 100, 7000, "ep0.r1.alt", (ipaddress.ip_address("192.0.2.10"),), True),
        RelayTarget(0, 50, 7001, "relay1.example.net", (), False),
    )
    # Priority first, then weight: the lower priority's target comes first.
    assert [(t.priority, t.port, t.addresses) for t in r2.targets] == [
        (0, 7401, (ipaddress.ip_address("192.0.2.21"),)),
        (1, 7400, (ipaddress.ip_address("2001:db8::2"),)),
    ]
    assert r2.public_keys == (R2.public,)


def test_instances_that_fail_validation_are_skipped_and_reported(
    named: NamedServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="altmesh.client.dns"):
        found = relays(named.port, named)
    skipped = {s.instance: s.kind for s in found.skipped}
    assert skipped == {
        "badkey._altmesh._tcp.alt.": "bad_key",
        "misnamed._altmesh._tcp.alt.": "bad_relay_record",
        "noaddress._altmesh._tcp.alt.": "no_endpoint",
        "gone._altmesh._tcp.alt.": "not_found",
    }
    assert {r.name for r in found.relays} == {"r1", "r2"}
    logged = " ".join(r.message for r in caplog.records)
    assert all(instance in logged for instance in skipped)


def test_an_instance_whose_records_were_forged_is_skipped_the_others_kept(
    named: NamedServer,
) -> None:
    r2_instance = dns.name.from_text("r2._altmesh._tcp.alt.")
    with DnsProxy((named.address, named.port)) as proxy:

        def forge(query: dns.message.Message) -> list[bytes]:
            answer = proxy.forward(query)
            question = query.question[0]
            if question.name == r2_instance and question.rdtype == dns.rdatatype.TXT:
                txt = answer.find_rrset(
                    answer.answer, r2_instance, dns.rdataclass.IN, dns.rdatatype.TXT
                )
                forged = dns.rdata.from_text(
                    dns.rdataclass.IN,
                    dns.rdatatype.TXT,
                    txt_presentation(*relay_instance_txt("r2", ATTACKER.public)),
                )
                answer.answer[answer.answer.index(txt)] = dns.rrset.from_rdata_list(
                    r2_instance, txt.ttl, [forged]
                )
            return [answer.to_wire()]

        proxy.answer = forge
        found = relays(proxy.port, named)
    assert [r.name for r in found.relays] == ["r1"]
    r2 = next(s for s in found.skipped if s.instance == "r2._altmesh._tcp.alt.")
    assert r2.kind == "dnssec_bogus"
    assert all(ATTACKER.public not in r.public_keys for r in found.relays)


def test_a_forged_relay_set_fails_as_a_whole(named: NamedServer) -> None:
    service = dns.name.from_text("_altmesh._tcp.alt.")
    with DnsProxy((named.address, named.port)) as proxy:

        def forge(query: dns.message.Message) -> list[bytes]:
            answer = proxy.forward(query)
            if query.question[0].name == service and query.question[0].rdtype == dns.rdatatype.PTR:
                ptr = answer.find_rrset(
                    answer.answer, service, dns.rdataclass.IN, dns.rdatatype.PTR
                )
                extra = dns.rdata.from_text(
                    dns.rdataclass.IN, dns.rdatatype.PTR, "evil._altmesh._tcp.alt."
                )
                forged = dns.rrset.from_rdata_list(service, ptr.ttl, [*ptr, extra])
                answer.answer[answer.answer.index(ptr)] = forged
            return [answer.to_wire()]

        proxy.answer = forge
        with pytest.raises(ResolveError) as info:
            relays(proxy.port, named)
    assert info.value.kind == "dnssec_bogus"
    assert info.value.name == "_altmesh._tcp.alt."


def test_a_zone_without_relays_gives_an_empty_set(tmp_path_factory: pytest.TempPathFactory) -> None:
    with NamedServer.start(tmp_path_factory.mktemp("dns-no-relays")) as empty:
        assert relays(empty.port, empty) == RelaySet((), ())
