"""The bind_alt scenario, shown with real queries and updates between the three test hosts.

ns1 is the primary, ns2 the secondary, resolver the split-DNS resolver. The primary may use the
resolver; the secondary is an outsider to it. Records are those of molecule.yml.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable

import pytest
import testinfra
from testinfra.host import Host

RUN_ID = os.environ.get("ALTMESH_RUN_ID", "local")  # scripts/molecule.sh: test hosts of this run
PRIMARY = f"bind-alt-ns1-{RUN_ID}"
SECONDARY = f"bind-alt-ns2-{RUN_ID}"
RESOLVER = f"bind-alt-resolver-{RUN_ID}"
DASHBOARD_KEY = "/etc/bind/keys/altmesh-dashboard.key"
TRANSFER_KEY = "/etc/bind/keys/altmesh-transfer.key"
RNDC_READONLY_KEY = "/etc/bind/keys/altmesh-rndc-readonly.key"

# name, type, the answer `dig +short` prints (sorted lines), as declared in molecule.yml
DECLARED_RECORDS = [
    ("www.alt", "A", ["10.89.77.200"]),
    ("www.alt", "AAAA", ["fd00:a17::200"]),
    ("www.alt", "TXT", ['"altmesh noise key ABCDEF"']),
    ("_altmesh._tcp.alt", "SRV", ["10 5 7443 www.alt."]),
    ("web.alt", "CNAME", ["www.alt."]),
    ("alt", "MX", ["10 mail.alt."]),
    ("mail.alt", "A", ["10.89.77.201", "10.89.77.202"]),
    ("alt", "CAA", ['0 issue ";"']),
    ("200.77.89.10.in-addr.alt", "PTR", ["www.alt."]),
    ("alt", "NS", ["ns1.alt.", "ns2.alt."]),
]


def podman_host(name: str) -> Host:
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def primary() -> Host:
    return podman_host(PRIMARY)


@pytest.fixture(scope="module")
def secondary() -> Host:
    return podman_host(SECONDARY)


@pytest.fixture(scope="module")
def resolver() -> Host:
    return podman_host(RESOLVER)


def address_of(host: Host) -> str:
    return str(host.check_output("hostname -I").split()[0])


def dig(host: Host, server: str, *query: str) -> str:
    command = "dig @%s +time=2 +tries=1 " + " ".join(["%s"] * len(query))
    return str(host.run(command, server, *query).stdout)


def short_answer(host: Host, server: str, name: str, rdtype: str) -> list[str]:
    return sorted(dig(host, server, "+short", "+norecurse", name, rdtype).splitlines())


def header_flags(dig_output: str) -> set[str]:
    match = re.search(r";; flags: ([a-z ]+);", dig_output)
    assert match, dig_output
    return set(match.group(1).split())


def status(dig_output: str) -> str:
    match = re.search(r"status: ([A-Z]+)", dig_output)
    assert match, dig_output
    return match.group(1)


def eventually(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return check()


def nsupdate(host: Host, server: str, commands: list[str], key_option: str = "") -> tuple[int, str]:
    script = "\n".join([f"server {server}", "zone alt.", *commands, "send", ""])
    result = host.run(f"printf %s {quote(script)} | nsupdate -t 5 {key_option}")
    return result.rc, result.stdout + result.stderr


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.mark.parametrize(("name", "rdtype", "expected"), DECLARED_RECORDS)
def test_declared_records_are_served_by_primary_and_secondary(
    primary: Host, secondary: Host, name: str, rdtype: str, expected: list[str]
) -> None:
    assert short_answer(primary, "127.0.0.1", name, rdtype) == sorted(expected)
    assert eventually(
        lambda: short_answer(secondary, "127.0.0.1", name, rdtype) == sorted(expected)
    )


def test_secondary_converges_to_the_primary_serial(primary: Host, secondary: Host) -> None:
    def serial(host: Host) -> str:
        return short_answer(host, "127.0.0.1", "alt", "SOA")[0].split()[2]

    assert eventually(lambda: serial(secondary) == serial(primary))


def test_changed_soa_timer_reaches_both_servers(primary: Host, secondary: Host) -> None:
    # side_effect.yml set bind_alt_soa_refresh to 7200 (converge: 3600)
    for host in (primary, secondary):
        assert eventually(
            lambda h=host: short_answer(h, "127.0.0.1", "alt", "SOA")[0].split()[3] == "7200"
        )
    mname, rname = short_answer(primary, "127.0.0.1", "alt", "SOA")[0].split()[:2]
    assert (mname, rname) == ("ns1.alt.", "hostmaster.alt.")


def test_zone_is_signed_on_both_servers(primary: Host, secondary: Host) -> None:
    for host in (primary, secondary):
        answer = dig(host, "127.0.0.1", "+dnssec", "+norecurse", "www.alt", "A")
        assert re.search(r"www\.alt\.\s+\d+\s+IN\s+RRSIG\s+A ", answer), answer


def test_retired_record_was_pruned_and_dashboard_record_kept(
    primary: Host, secondary: Host
) -> None:
    kept = ['"kept by pruning"']
    for host in (primary, secondary):
        assert eventually(lambda h=host: short_answer(h, "127.0.0.1", "retired.alt", "TXT") == [])
        assert eventually(
            lambda h=host: short_answer(h, "127.0.0.1", "dashboard-made.alt", "TXT") == kept
        )


def test_signed_update_is_accepted_and_reaches_the_secondary(
    primary: Host, secondary: Host
) -> None:
    name = f"signed-{os.getpid()}-{int(time.time())}.alt"
    rc, output = nsupdate(
        primary,
        address_of(primary),
        [f"update add {name}. 300 IN A 10.89.77.99"],
        f"-k {DASHBOARD_KEY}",
    )
    assert rc == 0, output
    assert short_answer(primary, "127.0.0.1", name, "A") == ["10.89.77.99"]
    assert eventually(lambda: short_answer(secondary, "127.0.0.1", name, "A") == ["10.89.77.99"])


def test_unsigned_update_is_refused(primary: Host, secondary: Host) -> None:
    rc, output = nsupdate(
        secondary, address_of(primary), ["update add unsigned.alt. 300 IN A 10.89.77.98"]
    )
    assert rc != 0
    assert "REFUSED" in output, output
    assert short_answer(primary, "127.0.0.1", "unsigned.alt", "A") == []


def test_wrongly_signed_update_is_refused(primary: Host, secondary: Host) -> None:
    wrong_secret = base64.b64encode(os.urandom(32)).decode()
    rc, output = nsupdate(
        secondary,
        address_of(primary),
        ["update add forged.alt. 300 IN A 10.89.77.97"],
        f"-y hmac-sha256:altmesh-dashboard:{wrong_secret}",
    )
    assert rc != 0
    assert re.search(r"BADSIG|BADKEY|tsig verify failure|NOTAUTH", output), output
    assert short_answer(primary, "127.0.0.1", "forged.alt", "A") == []


def test_dashboard_key_cannot_change_the_delegation(primary: Host) -> None:
    rc, output = nsupdate(
        primary,
        "127.0.0.1",
        ["update add alt. 300 IN NS ns.elsewhere.example."],
        f"-k {DASHBOARD_KEY}",
    )
    assert rc != 0
    assert "REFUSED" in output, output
    assert "ns.elsewhere.example." not in short_answer(primary, "127.0.0.1", "alt", "NS")


def test_dashboard_key_can_delegate_a_subzone(primary: Host) -> None:
    rc, output = nsupdate(
        primary,
        "127.0.0.1",
        ["update add delegated.alt. 300 IN NS ns1.delegated.example."],
        f"-k {DASHBOARD_KEY}",
    )
    assert rc == 0, output
    # A delegation is answered as a referral (authority section), so read the whole answer.
    assert eventually(
        lambda: (
            "ns1.delegated.example."
            in dig(primary, "127.0.0.1", "+norecurse", "delegated.alt", "NS")
        )
    ), "the delegation never appeared"
    nsupdate(
        primary,
        "127.0.0.1",
        ["update delete delegated.alt. NS"],
        f"-k {DASHBOARD_KEY}",
    )


def test_zone_transfer_needs_the_transfer_key(primary: Host, secondary: Host) -> None:
    unsigned = dig(secondary, address_of(primary), "alt", "AXFR")
    assert "Transfer failed" in unsigned, unsigned
    signed = dig(secondary, address_of(primary), "-k", TRANSFER_KEY, "alt", "AXFR")
    assert re.search(r"www\.alt\.\s+\d+\s+IN\s+A\s+10\.89\.77\.200", signed), signed


def test_the_dashboard_key_reads_the_zone_by_axfr(primary: Host, secondary: Host) -> None:
    # the dashboard shows the zone it manages from a TSIG-signed AXFR with its own key
    key = primary.file(DASHBOARD_KEY).content_string
    secondary.run("install -d -m 0700 /root/dashboard-key")
    written = secondary.run(f"umask 077; printf %s {quote(key)} > /root/dashboard-key/key")
    assert written.rc == 0, written.stderr
    try:
        transfer = dig(
            secondary, address_of(primary), "-k", "/root/dashboard-key/key", "alt", "AXFR"
        )
    finally:
        secondary.run("rm -rf /root/dashboard-key")
    assert "Transfer failed" not in transfer, transfer
    assert re.search(r"www\.alt\.\s+\d+\s+IN\s+A\s+10\.89\.77\.200", transfer), transfer
    assert re.search(r"^alt\.\s+\d+\s+IN\s+SOA\s", transfer, re.M), transfer


def test_an_update_signed_with_the_dashboard_key_from_another_host_is_applied(
    primary: Host, secondary: Host
) -> None:
    key = primary.file(DASHBOARD_KEY).content_string
    secondary.run("install -d -m 0700 /root/dashboard-key")
    secondary.run(f"umask 077; printf %s {quote(key)} > /root/dashboard-key/key")
    name = f"from-dashboard-{os.getpid()}.alt"
    try:
        rc, output = nsupdate(
            secondary,
            address_of(primary),
            [f'update add {name}. 300 IN TXT "made with the dashboard key"'],
            "-k /root/dashboard-key/key",
        )
    finally:
        secondary.run("rm -rf /root/dashboard-key")
    assert rc == 0, output
    assert short_answer(primary, "127.0.0.1", name, "TXT") == ['"made with the dashboard key"']


def rndc_from(client: Host, server: str, key: str, command: str) -> tuple[int, str]:
    # The test hosts are DNS servers with an /etc/bind/rndc.conf of their own, which would take
    # precedence over `rndc -k`: a config of its own names the read-only key instead.
    conf = 'include "/root/rndc-ro/key";\noptions { default-key "altmesh-rndc-readonly"; };\n'
    client.run("install -d -m 0700 /root/rndc-ro")
    client.run(f"umask 077; printf %s {quote(key)} > /root/rndc-ro/key")
    client.run(f"umask 077; printf %s {quote(conf)} > /root/rndc-ro/rndc.conf")
    try:
        result = client.run(f"rndc -c /root/rndc-ro/rndc.conf -s {server} -p 953 {command}")
    finally:
        client.run("rm -rf /root/rndc-ro")
    return result.rc, result.stdout + result.stderr


def test_rndc_status_works_read_only_from_an_allowed_host(primary: Host, resolver: Host) -> None:
    key = primary.file(RNDC_READONLY_KEY).content_string
    rc, output = rndc_from(resolver, address_of(primary), key, "status")
    assert rc == 0, output
    assert "server is up and running" in output, output
    rc, output = rndc_from(resolver, address_of(primary), key, "reconfig")
    assert rc != 0, output
    assert primary.run("rndc status").rc == 0
    assert "up and running" in primary.check_output("rndc status")


def test_rndc_refuses_hosts_that_are_not_allowed(primary: Host, secondary: Host) -> None:
    key = primary.file(RNDC_READONLY_KEY).content_string
    rc, output = rndc_from(secondary, address_of(primary), key, "status")
    assert rc != 0, output


def test_resolver_returns_validated_answers(resolver: Host, primary: Host) -> None:
    for client, server in ((resolver, "127.0.0.1"), (primary, address_of(resolver))):
        answer = dig(client, server, "+dnssec", "www.alt", "A")
        assert status(answer) == "NOERROR", answer
        assert "ad" in header_flags(answer), answer
        assert re.search(r"www\.alt\.\s+\d+\s+IN\s+A\s+10\.89\.77\.200", answer), answer
    cname = dig(resolver, "127.0.0.1", "web.alt", "A")
    assert "ad" in header_flags(cname) and "10.89.77.200" in cname, cname


def test_resolver_refuses_outsiders(resolver: Host, secondary: Host) -> None:
    answer = dig(secondary, address_of(resolver), "www.alt", "A")
    assert status(answer) == "REFUSED", answer


def test_resolver_answers_other_names_locally_without_the_root_servers(resolver: Host) -> None:
    answer = dig(resolver, "127.0.0.1", "www.example.com", "A")
    assert status(answer) == "NXDOMAIN", answer
    assert "localhost." in answer  # the SOA of the local empty root zone, not the internet's


def test_authoritative_servers_refuse_recursion(
    resolver: Host, primary: Host, secondary: Host
) -> None:
    for server in (primary, secondary):
        answer = dig(resolver, address_of(server), "www.example.com", "A")
        assert status(answer) == "REFUSED", answer
        assert "ra" not in header_flags(answer), answer


BURST = """
import socket, dns.flags, dns.message
query = dns.message.make_query("www.alt", "A")
query.flags = 0
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(3.0)  # a loaded host may answer late; only silence ends the count
for query.id in range(50):
    udp.sendto(query.to_wire(), ("%s", 53))
full = 0
try:
    while True:
        full += not dns.message.from_wire(udp.recv(4096)).flags & dns.flags.TC
except socket.timeout:
    pass
print(full)
"""


def full_answers_to_a_burst_of_50(client: Host, server: str) -> int:
    return int(client.check_output("python3 -c %s", BURST % server))


def test_response_rate_limiting_where_enabled(
    resolver: Host, primary: Host, secondary: Host
) -> None:
    # primary: 5 responses/s; secondary: no rate limit
    assert full_answers_to_a_burst_of_50(resolver, address_of(primary)) <= 25
    assert full_answers_to_a_burst_of_50(resolver, address_of(secondary)) == 50


def test_statistics_channel_answers_on_localhost_only(primary: Host, resolver: Host) -> None:
    stats = primary.run("curl -sf --max-time 5 http://127.0.0.1:8053/xml/v3/server")
    assert stats.rc == 0 and "<statistics" in stats.stdout, stats.stderr
    from_elsewhere = resolver.run(
        "curl -sf --max-time 3 http://%s:8053/xml/v3/server", address_of(primary)
    )
    assert from_elsewhere.rc != 0


@pytest.mark.parametrize("name", [PRIMARY, SECONDARY, RESOLVER])
def test_named_never_tries_the_internet_root_servers(name: str) -> None:
    log = podman_host(name).check_output("journalctl -u named --no-pager")
    assert "resolving './" not in log, log
    assert "network unreachable" not in log, log
