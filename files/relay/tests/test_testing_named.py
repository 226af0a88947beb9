"""The test launcher of a real `named`: signed zone, TSIG, rndc, free ports and a clean stop."""

from __future__ import annotations

import base64
import errno
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import altmesh.testing.named as named_module
import dns.dnssec
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import dns.update
import dns.zone
import pytest
from altmesh.testing.named import NamedServer, NamedStartError

ZONE = dns.name.from_text("alt.")


def _secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _validated(named: NamedServer, name: str, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset:
    """Query `name`/`rdtype` and validate it with the zone keys, themselves validated from the
    launcher's trust anchor: the chain a client pinned to `.trust_anchor` would follow."""
    key_query = dns.message.make_query(ZONE, dns.rdatatype.DNSKEY, want_dnssec=True)
    key_answer = dns.query.tcp(key_query, named.address, port=named.port, timeout=2)
    keys = key_answer.find_rrset(key_answer.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    key_sigs = key_answer.find_rrset(
        key_answer.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY
    )
    dns.dnssec.validate(keys, key_sigs, {ZONE: named.trust_anchor_rrset()})

    owner = dns.name.from_text(name)
    query = dns.message.make_query(owner, rdtype, want_dnssec=True)
    answer = dns.query.udp(query, named.address, port=named.port, timeout=2)
    rrset = answer.find_rrset(answer.answer, owner, dns.rdataclass.IN, rdtype)
    sigs = answer.find_rrset(answer.answer, owner, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
    dns.dnssec.validate(rrset, sigs, {ZONE: keys})
    return rrset


@pytest.fixture
def named(tmp_path: Path) -> Iterator[NamedServer]:
    with NamedServer.start(
        tmp_path / "named",
        records=["www 300 IN AAAA fd00::1", 'www 300 IN TXT "altmesh-key=abc"'],
        tsig_keys={"updater": _secret(), "reader": _secret()},
        update_key="updater",
    ) as server:
        yield server


def test_start_serves_records_signed_and_valid_under_the_trust_anchor(named: NamedServer) -> None:
    assert named.address == "127.0.0.1"
    assert named.zone == "alt."
    rrset = _validated(named, "www.alt.", dns.rdatatype.AAAA)
    assert [rdata.to_text() for rdata in rrset] == ["fd00::1"]
    assert [rdata.to_text() for rdata in _validated(named, "www.alt.", dns.rdatatype.TXT)] == [
        '"altmesh-key=abc"'
    ]


def test_ds_is_the_digest_of_the_trust_anchor_key(named: NamedServer) -> None:
    anchor_key = next(iter(named.trust_anchor_rrset()))
    expected = dns.dnssec.make_ds(ZONE, anchor_key, "SHA256")
    assert named.ds == f"alt. IN DS {expected.to_text()}"


def test_a_record_forged_after_signing_fails_validation(named: NamedServer) -> None:
    rrset = _validated(named, "www.alt.", dns.rdatatype.AAAA)
    query = dns.message.make_query("www.alt.", dns.rdatatype.AAAA, want_dnssec=True)
    answer = dns.query.udp(query, named.address, port=named.port, timeout=2)
    sigs = answer.find_rrset(
        answer.answer, rrset.name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.AAAA
    )
    forged = dns.rrset.from_text("www.alt.", 300, "IN", "AAAA", "fd00::666")
    keys_query = dns.message.make_query(ZONE, dns.rdatatype.DNSKEY)
    keys_answer = dns.query.tcp(keys_query, named.address, port=named.port, timeout=2)
    keys = keys_answer.find_rrset(keys_answer.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    with pytest.raises(dns.dnssec.ValidationFailure):
        dns.dnssec.validate(forged, sigs, {ZONE: keys})


def test_update_key_may_update_and_the_update_is_served_signed(named: NamedServer) -> None:
    keyring = dns.tsigkeyring.from_text({"updater": named.tsig_keys["updater"]})
    update = dns.update.UpdateMessage(
        "alt.", keyring=keyring, keyname="updater", keyalgorithm=named.tsig_algorithm
    )
    update.add("new", 300, "AAAA", "fd00::2")
    response = dns.query.tcp(update, named.address, port=named.port, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR
    # Inline signing serves the update once the signer has signed it: a few ms, longer under load.
    deadline = time.monotonic() + 10
    while True:
        try:
            served = _validated(named, "new.alt.", dns.rdatatype.AAAA)
            break
        except (KeyError, dns.dnssec.ValidationFailure):  # not in the signed zone yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert [r.to_text() for r in served] == ["fd00::2"]


def test_a_key_without_the_grant_is_refused_updates(named: NamedServer) -> None:
    keyring = dns.tsigkeyring.from_text({"reader": named.tsig_keys["reader"]})
    update = dns.update.UpdateMessage(
        "alt.", keyring=keyring, keyname="reader", keyalgorithm=named.tsig_algorithm
    )
    update.add("new", 300, "AAAA", "fd00::2")
    response = dns.query.tcp(update, named.address, port=named.port, timeout=2)
    assert response.rcode() == dns.rcode.REFUSED


def test_every_tsig_key_may_transfer_the_zone(named: NamedServer) -> None:
    keyring = dns.tsigkeyring.from_text({"reader": named.tsig_keys["reader"]})
    zone = dns.zone.from_xfr(
        dns.query.xfr(
            named.address,
            "alt.",
            port=named.port,
            keyring=keyring,
            keyname="reader",
            keyalgorithm=named.tsig_algorithm,
            timeout=2,
        )
    )
    assert zone.get_rdataset("www", "AAAA") is not None


def test_rndc_status_answers(named: NamedServer) -> None:
    result = named.rndc("status")
    assert result.returncode == 0, result.stderr
    assert "server is up and running" in result.stdout


def _port_in_use(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:
            # As a server restarting on the port would: connections left in TIME_WAIT by rndc or
            # TCP queries do not hold the port, only a listener does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            assert err.errno == errno.EADDRINUSE
            return True
    return False


def test_stop_ends_the_process_and_frees_its_ports(tmp_path: Path) -> None:
    server = NamedServer.start(tmp_path / "named")
    try:
        assert _port_in_use(server.port, socket.SOCK_DGRAM)
        assert _port_in_use(server.port, socket.SOCK_STREAM)
        assert _port_in_use(server.rndc_port, socket.SOCK_STREAM)
    finally:
        server.stop()
    assert not server.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert not _port_in_use(server.port, socket.SOCK_DGRAM)
    assert not _port_in_use(server.port, socket.SOCK_STREAM)
    assert not _port_in_use(server.rndc_port, socket.SOCK_STREAM)


def test_two_servers_get_distinct_ports_and_answer_for_their_own_zone(tmp_path: Path) -> None:
    with (
        NamedServer.start(tmp_path / "one", records=["who 60 IN TXT one"]) as one,
        NamedServer.start(tmp_path / "two", records=["who 60 IN TXT two"]) as two,
    ):
        assert len({one.port, one.rndc_port, two.port, two.rndc_port}) == 4
        for server, expected in ((one, '"one"'), (two, '"two"')):
            answer = dns.query.udp(
                dns.message.make_query("who.alt.", "TXT"), server.address, port=server.port
            )
            assert [r.to_text() for r in answer.answer[0]] == [expected]


def test_unsigned_zone_when_dnssec_is_off(tmp_path: Path) -> None:
    with NamedServer.start(tmp_path / "named", zone="example.alt", dnssec=False) as server:
        assert server.zone == "example.alt."
        assert server.trust_anchor == ""
        query = dns.message.make_query("example.alt.", "SOA", want_dnssec=True)
        answer = dns.query.udp(query, server.address, port=server.port, timeout=2)
        assert answer.rcode() == dns.rcode.NOERROR
        assert all(rrset.rdtype != dns.rdatatype.RRSIG for rrset in answer.answer)


def test_a_broken_zone_fails_fast_with_named_log(tmp_path: Path) -> None:
    with pytest.raises(NamedStartError, match=r"could not load zone alt\.") as failure:
        NamedServer.start(tmp_path / "named", records=["www 300 IN AAAA not-an-address"])
    assert "not loaded due to errors" in str(failure.value)


def test_update_key_must_be_one_of_the_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="update_key 'ghost'"):
        NamedServer.start(tmp_path / "named", tsig_keys={"real": _secret()}, update_key="ghost")


def test_an_enforcing_apparmor_profile_for_named_is_reported_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "profiles"
    profiles.write_text("/usr/bin/man (enforce)\nnamed (enforce)\n")
    monkeypatch.setattr(named_module, "_APPARMOR_PROFILES", profiles)
    with pytest.raises(NamedStartError, match="AppArmor enforces a profile on named"):
        NamedServer.start(tmp_path / "named")
    assert not (tmp_path / "named" / "named.conf").exists()  # nothing was attempted

    profiles.write_text("named (complain)\n")
    assert not named_module._apparmor_confines_named()
    monkeypatch.setattr(named_module, "_APPARMOR_PROFILES", tmp_path / "absent")
    assert not named_module._apparmor_confines_named()


@pytest.mark.parametrize("taken", ["dns", "rndc"])
def test_a_port_taken_after_the_check_makes_start_pick_new_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: str
) -> None:
    """The race a free-port check cannot close: another process binds the port before named."""
    real_free_port = named_module.free_port
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
    ):
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        occupied = tcp.getsockname()[1]
        if taken == "dns":
            udp.bind(("127.0.0.1", occupied))
            planned = [occupied]
        else:
            planned = [real_free_port(udp_too=True), occupied]

        def rigged_free_port(*, udp_too: bool, avoid: frozenset[int] = frozenset()) -> int:
            return planned.pop(0) if planned else real_free_port(udp_too=udp_too, avoid=avoid)

        monkeypatch.setattr(named_module, "free_port", rigged_free_port)
        with NamedServer.start(tmp_path / "named") as server:
            assert occupied not in (server.port, server.rndc_port)
            assert server.rndc("status").returncode == 0
            answer = dns.query.udp(
                dns.message.make_query("alt.", "SOA"), server.address, port=server.port, timeout=2
            )
            assert answer.rcode() == dns.rcode.NOERROR
