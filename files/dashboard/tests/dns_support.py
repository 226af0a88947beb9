"""Helpers of the DNS tests: a real named with the dashboard's TSIG key, and ways to read it back
the way outsiders do (a plain DNS query, a TSIG-signed AXFR) rather than through the dashboard."""

from __future__ import annotations

import base64
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.tsigkeyring
import dns.zone
from altmesh.testing.named import NamedServer

DASHBOARD_KEY = "dashboard-key"
READ_ONLY_KEY = "reader-key"
NETWORK_PREFIX = "fd00:1:2::/48"
SEED_RECORDS = (
    "www 300 IN AAAA fd00:1:2::80",
    "alias 300 IN CNAME www",
    'notes 300 IN TXT "hello"',
)


def _secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class DnsLab:
    named: NamedServer
    secret: str
    reader_secret: str

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Dashboard settings that point at this named with the update key."""
        values: dict[str, Any] = {
            "DNS_SERVER": self.named.address,
            "DNS_PORT": self.named.port,
            "DNS_ZONE": "alt.",
            "DNS_TSIG_KEY_NAME": DASHBOARD_KEY,
            "DNS_TSIG_SECRET": self.secret,
            "DNS_TSIG_ALGORITHM": "hmac-sha256",
            "DNS_TIMEOUT": 5.0,  # generous: CI runs on a loaded host
            "RNDC_ADDRESS": self.named.address,
            "RNDC_PORT": self.named.rndc_port,
            "RNDC_KEY_FILE": str(self.named.rndc_key_file),
            "NETWORK_PREFIX": NETWORK_PREFIX,
        }
        values.update(overrides)
        return values


@contextmanager
def dns_lab(workdir: Path) -> Iterator[DnsLab]:
    secret, reader_secret = _secret(), _secret()
    with NamedServer.start(
        workdir,
        records=SEED_RECORDS,
        tsig_keys={DASHBOARD_KEY: secret, READ_ONLY_KEY: reader_secret},
        update_key=DASHBOARD_KEY,
    ) as named:
        yield DnsLab(named, secret, reader_secret)


def query(named: NamedServer, name: str, rdtype: str) -> list[str]:
    """What named answers to a plain, unsigned query (as any resolver would ask)."""
    owner = dns.name.from_text(name)
    message = dns.message.make_query(owner, rdtype)
    response = dns.query.tcp(message, named.address, port=named.port, timeout=5)
    rrset = response.get_rrset(
        response.answer, owner, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype)
    )
    return sorted(rdata.to_text() for rdata in rrset) if rrset is not None else []


def wait_for_answer(
    named: NamedServer, name: str, rdtype: str, expected: list[str], timeout: float = 10.0
) -> list[str]:
    """Poll until named serves `expected`: with inline signing, answers trail an update by a few
    milliseconds (the signed copy is built after the update is applied)."""
    deadline = time.monotonic() + timeout
    answer = query(named, name, rdtype)
    while sorted(expected) != answer and time.monotonic() < deadline:
        time.sleep(0.02)
        answer = query(named, name, rdtype)
    return answer


def axfr(named: NamedServer, secret: str, key: str = DASHBOARD_KEY) -> set[tuple[str, str, str]]:
    """Every (name, type, data) of the zone by a TSIG-signed AXFR, the signer's records left out."""
    keyring = dns.tsigkeyring.from_text({key: secret})
    zone = dns.zone.from_xfr(
        dns.query.xfr(
            named.address,
            "alt.",
            port=named.port,
            keyring=keyring,
            keyname=key,
            keyalgorithm="hmac-sha256",
            relativize=False,
            timeout=5,
        ),
        relativize=False,
    )
    skip = {"RRSIG", "NSEC", "NSEC3", "DNSKEY", "TYPE65534", "SOA", "NSEC3PARAM"}
    return {
        (name.to_text(), dns.rdatatype.to_text(rdataset.rdtype), rdata.to_text())
        for name, node in zone.nodes.items()
        for rdataset in node.rdatasets
        if dns.rdatatype.to_text(rdataset.rdtype) not in skip
        for rdata in rdataset
    }


def wait_for_axfr(
    named: NamedServer, secret: str, present: set[tuple[str, str, str]], timeout: float = 10.0
) -> set[tuple[str, str, str]]:
    """AXFR (as `axfr`) until every record of `present` is in it: transfers come from the signed
    copy, which trails an update by a few milliseconds."""
    deadline = time.monotonic() + timeout
    records = axfr(named, secret)
    while not present <= records and time.monotonic() < deadline:
        time.sleep(0.02)
        records = axfr(named, secret)
    return records


def update_serial(named: NamedServer) -> int:
    """The serial of the zone's unsigned copy, which only dynamic updates move (from `rndc
    zonestatus`). The served SOA is the signed copy's, which the signer also bumps on its own
    (more than once while it finishes signing a freshly started zone), so comparing that would
    make "nothing was sent" depend on the signer's timing."""
    status = subprocess.run(
        [
            "/usr/sbin/rndc",
            "-s",
            named.address,
            "-p",
            str(named.rndc_port),
            "-k",
            str(named.rndc_key_file),
            "zonestatus",
            "alt",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    match = re.search(r"^serial: (\d+)$", status, re.MULTILINE)
    if match is None:
        raise AssertionError(f"rndc zonestatus shows no serial:\n{status}")
    return int(match.group(1))


@contextmanager
def silent_tcp_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers: a hung DNS server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses TCP connections: bound but not listening, and held for the
    block, so no other process can start listening on it meanwhile (a released port could be)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])
