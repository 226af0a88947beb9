"""The client's resolver against a real signed named and an on-path responder that lies.

The responder (`DnsProxy`) stands between the resolver and named: it can rewrite answers, send
garbage or another query's answer first, or fail. What named signed is all that may be believed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from altmesh.client.dnssec import AltResolver, ResolvedName, ResolveError, parse_trust_anchors
from altmesh.config import HostPort
from altmesh.dnsrecords import key_txt, txt_presentation
from altmesh.keyfile import encode_public_key
from altmesh.protocol import StaticKeyPair, network_prefix, node_address
from altmesh.testing.named import NamedServer

from .dns_proxy import DnsProxy
from .helpers import ALTMESH, PREFIX

PREFIX_NET = network_prefix(PREFIX)
DATA = StaticKeyPair.generate()
ATTACKER = StaticKeyPair.generate()
DATA_ADDRESS = node_address(PREFIX_NET, DATA.public)
ATTACKER_ADDRESS = node_address(PREFIX_NET, ATTACKER.public)


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    data_key = key_txt(DATA.public)
    records = [
        # A signed wildcard, as an operator (or a stolen dashboard account) might add one.
        f"* 300 IN AAAA {ATTACKER_ADDRESS}",
        f"* 300 IN TXT {txt_presentation(key_txt(ATTACKER.public))}",
        f"data 300 IN AAAA {DATA_ADDRESS}",
        f"data 300 IN TXT {txt_presentation(data_key)}",
        # A broken key record beside the good one; and the good key split across two strings.
        f"multi 300 IN AAAA {DATA_ADDRESS}",
        'multi 300 IN TXT "altmesh-key=not-a-key"',
        f"multi 300 IN TXT {txt_presentation(data_key)}",
        f"split 300 IN AAAA {DATA_ADDRESS}",
        f"split 300 IN TXT {txt_presentation(data_key[:20], data_key[20:])}",
    ]
    with NamedServer.start(tmp_path_factory.mktemp("dns-hardening"), records=records) as server:
        yield server


def resolver(named: NamedServer, port: int, timeout: float = 2.0) -> AltResolver:
    return AltResolver(
        [HostPort("127.0.0.1", port)],
        parse_trust_anchors([named.trust_anchor]),
        PREFIX_NET,
        timeout=timeout,
    )


def resolve(named: NamedServer, port: int, name: str, timeout: float = 2.0) -> ResolvedName:
    return asyncio.run(resolver(named, port, timeout).resolve(name))


def _renamed(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(owner, rrset.ttl, list(rrset))


def wildcard_substitution(proxy: DnsProxy, keep_proof: bool) -> None:
    """Answer queries for data.alt. with the wildcard's signed expansion, owner rewritten."""
    victim = dns.name.from_text("data.alt.")

    def answer(query: dns.message.Message) -> list[bytes]:
        question = query.question[0]
        if question.name != victim:
            return [proxy.forward(query).to_wire()]
        decoy = dns.message.make_query(
            dns.name.from_text("nothing-here.alt."), question.rdtype, want_dnssec=True
        )
        decoy.flags |= dns.flags.CD
        expanded = proxy.forward(decoy)
        forged = dns.message.make_response(query)
        forged.flags |= dns.flags.AA
        forged.answer = [_renamed(rrset, victim) for rrset in expanded.answer]
        if keep_proof:
            forged.authority = list(expanded.authority)  # the NSEC proving nothing-here.alt.
        return [forged.to_wire()]

    proxy.answer = answer


@pytest.mark.parametrize("keep_proof", [False, True], ids=["proof dropped", "other name's proof"])
def test_a_wildcard_answer_substituted_for_an_existing_name_is_refused(
    named: NamedServer, keep_proof: bool
) -> None:
    with DnsProxy((named.address, named.port)) as proxy:
        wildcard_substitution(proxy, keep_proof)
        with pytest.raises(ResolveError) as info:
            resolve(named, proxy.port, "data.alt")
    assert info.value.kind == "dnssec_bogus"
    assert info.value.name == "data.alt"
    assert "*.alt. expanded, without a proof (NSEC) that data.alt. does not exist" in str(
        info.value
    )


def test_the_exact_answer_for_an_existing_name_still_validates(named: NamedServer) -> None:
    with DnsProxy((named.address, named.port)) as proxy:
        result = resolve(named, proxy.port, "data.alt")
    assert (result.address, result.public_key) == (DATA_ADDRESS, DATA.public)


def test_a_real_wildcard_answer_with_its_nsec_proof_validates(named: NamedServer) -> None:
    result = resolve(named, named.port, "anything-else.alt")
    assert (result.address, result.public_key) == (ATTACKER_ADDRESS, ATTACKER.public)


def test_the_resolve_command_refuses_the_substituted_wildcard(
    named: NamedServer, tmp_path: Path
) -> None:
    with DnsProxy((named.address, named.port)) as proxy:
        wildcard_substitution(proxy, keep_proof=True)
        result = run_resolve(named, tmp_path, proxy.port, "data.alt")
    assert result.returncode == 1
    assert encode_public_key(ATTACKER.public) not in result.stdout
    assert "DNSSEC validated" not in result.stdout
    assert "altmesh: cannot resolve data.alt: data.alt. AAAA: " in result.stderr
    assert "(dnssec_bogus)" in result.stderr


def test_garbage_and_a_wrong_id_reply_do_not_fail_the_lookup(named: NamedServer) -> None:
    with DnsProxy((named.address, named.port)) as proxy:

        def noisy(query: dns.message.Message) -> list[bytes]:
            real = proxy.forward(query)
            wrong_id = dns.message.from_wire(real.to_wire())
            wrong_id.id = (real.id + 1) % 65536
            return [b"\x00garbage\xff" * 3, wrong_id.to_wire(), real.to_wire()]

        proxy.answer = noisy
        result = resolve(named, proxy.port, "data.alt")
        assert len(proxy.queries) >= 3  # DNSKEY, AAAA, TXT: each met the noise first
    assert result.public_key == DATA.public


def test_a_bad_key_record_beside_a_valid_one_is_logged_and_the_valid_one_used(
    named: NamedServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="altmesh.client.dns"):
        result = resolve(named, named.port, "multi.alt")
    assert result.public_key == DATA.public
    assert any("multi.alt" in r.message and "not-a-key" in r.message for r in caplog.records)


def test_a_key_split_across_two_txt_strings_is_read(named: NamedServer) -> None:
    assert resolve(named, named.port, "split.alt").public_key == DATA.public


def test_servfail_names_the_name_asked_the_query_and_the_server(named: NamedServer) -> None:
    with DnsProxy((named.address, named.port)) as proxy:

        def servfail(query: dns.message.Message) -> list[bytes]:
            failed = dns.message.make_response(query)
            failed.set_rcode(dns.rcode.SERVFAIL)
            return [failed.to_wire()]

        proxy.answer = servfail
        with pytest.raises(ResolveError) as info:
            resolve(named, proxy.port, "data.alt")
    assert info.value.kind == "dns_error"
    assert str(info.value) == f"data.alt: alt. DNSKEY: 127.0.0.1:{proxy.port} answered SERVFAIL"


def test_a_closed_port_is_reported_as_refused_not_as_a_timeout(named: NamedServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(ResolveError) as info:
        resolve(named, closed, "data.alt", timeout=5)
    assert info.value.kind == "dns_unreachable"
    assert str(info.value) == (
        f"data.alt: alt. DNSKEY: 127.0.0.1:{closed}: connection refused "
        "(no DNS server on that port)"
    )


def test_a_silent_server_is_reported_as_a_timeout(named: NamedServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with pytest.raises(ResolveError) as info:
            resolve(named, port, "data.alt", timeout=0.3)
    assert str(info.value) == f"data.alt: alt. DNSKEY: 127.0.0.1:{port}: no answer within 0.3 s"


def test_the_resolve_command_reports_a_failed_lookup_under_the_name_asked(
    named: NamedServer, tmp_path: Path
) -> None:
    with DnsProxy((named.address, named.port)) as proxy:

        def servfail(query: dns.message.Message) -> list[bytes]:
            failed = dns.message.make_response(query)
            failed.set_rcode(dns.rcode.SERVFAIL)
            return [failed.to_wire()]

        proxy.answer = servfail
        result = run_resolve(named, tmp_path, proxy.port, "data.alt")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"altmesh: cannot resolve data.alt: alt. DNSKEY: 127.0.0.1:{proxy.port} answered "
        "SERVFAIL (dns_error)"
    )


def test_a_name_without_the_type_asked_says_which_record_is_missing(named: NamedServer) -> None:
    with pytest.raises(ResolveError) as info:
        resolve(named, named.port, "ns1.alt")  # ns1 has an A record only
    assert info.value.kind == "not_found"
    assert str(info.value) == "ns1.alt: ns1.alt. AAAA: ns1.alt. has no AAAA record"


def run_resolve(
    named: NamedServer, tmp_path: Path, port: int, name: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "client.toml"
    config.write_text(
        f"""role = "client"
[network]
name = "t"
prefix = "{PREFIX}"
[node]
private_key_file = "k"
state_dir = "s"
[[relays]]
address = "127.0.0.1:1"
public_key = "{encode_public_key(ATTACKER.public)}"
[dns]
servers = ["127.0.0.1:{port}"]
trust_anchor = "{named.trust_anchor}"
"""
    )
    return subprocess.run(
        [*ALTMESH, "resolve", "--config", str(config), name],
        capture_output=True,
        text=True,
        timeout=60,
    )
