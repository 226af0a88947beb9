"""Shared parts of the reporting and service-registration tests: a relay that reports to a real
dashboard (altmesh.testing.dashboard), security events made on purpose, and DNS read back."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
from altmesh.testing.dashboard import DashboardServer
from altmesh.testing.named import NamedServer

from . import helpers
from .helpers import RELAY, Node, Proc, free_port

RELAY_NAME = "relay1"
UPDATE_KEY = "dashboard-key"


@dataclass
class DnsDashboard:
    """A real named (signed alt.) and a real dashboard that updates it with its TSIG key."""

    named: NamedServer
    dashboard: DashboardServer


@contextlib.contextmanager
def dns_dashboard(workdir: Path, **settings: object) -> Iterator[DnsDashboard]:
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    with NamedServer.start(
        workdir / "named", tsig_keys={UPDATE_KEY: secret}, update_key=UPDATE_KEY
    ) as named:
        dns_settings: dict[str, object] = {
            "DNS_SERVER": named.address,
            "DNS_PORT": named.port,
            "DNS_ZONE": "alt.",
            "DNS_TSIG_KEY_NAME": UPDATE_KEY,
            "DNS_TSIG_SECRET": secret,
            "DNS_TSIG_ALGORITHM": "hmac-sha256",
            "DNS_TIMEOUT": 5.0,
            "RNDC_ADDRESS": named.address,
            "RNDC_PORT": named.rndc_port,
            "RNDC_KEY_FILE": str(named.rndc_key_file),
            "NETWORK_PREFIX": helpers.PREFIX,
            **settings,
        }
        with DashboardServer.start(workdir / "dashboard", dns_settings) as dashboard:
            yield DnsDashboard(named, dashboard)


def write_token(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


class ReportingRelay:
    """A relay process whose [dashboard] points at `url` (options of the table as keywords)."""

    def __init__(self, workdir: Path, url: str, token: str, **dashboard: object) -> None:
        self.workdir = workdir
        self.node = Node(RELAY_NAME, workdir)
        self.port, self.metrics_port = free_port(), free_port()
        helpers.write_relay_config(self.node, self.port, self.metrics_port)
        helpers.set_options(self.node.config, "relay", name=RELAY_NAME)
        helpers.set_options(self.node.config, "log", aggregate_seconds=1.0)
        token_file = write_token(self.node.dir / "dashboard.token", token)
        options: dict[str, object] = {
            "url": url,
            "token_file": str(token_file),
            "timeout_seconds": 1.0,
            **dashboard,
        }
        helpers.set_options(self.node.config, "dashboard", **options)
        self.proc: Proc | None = None

    def start(self) -> Proc:
        self.proc = Proc("relay", [*RELAY, "--config", str(self.node.config)], self.workdir)
        self.proc.wait_for_output("altmesh-relay ready")
        return self.proc

    def stop(self, sig: int | None = None) -> int:
        assert self.proc is not None
        return self.proc.stop() if sig is None else self.proc.stop(sig)

    def metric(self, name: str) -> float:
        return helpers.metric_value(helpers.metrics_text(self.metrics_port), name)


async def _garbage(port: int) -> str:
    """A connection that sends a malformed first handshake message: one `handshake_failed`
    event whose `peer` is this connection's address (returned)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host, local_port = writer.get_extra_info("sockname")[:2]
    writer.write(b"\x00\x30" + os.urandom(48))
    try:
        async with asyncio.timeout(5):
            while await reader.read(65536):
                pass
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
    return f"{host}:{local_port}"


def make_handshake_failures(port: int, count: int) -> list[str]:
    """`count` security events (one per connection, in this order); their `peer` fields."""

    async def run() -> list[str]:
        return [await _garbage(port) for _ in range(count)]

    return asyncio.run(run())


def handshake_failures(dashboard: DashboardServer) -> list[dict[str, object]]:
    return [e for e in dashboard.stored_events(RELAY_NAME) if e["kind"] == "handshake_failed"]


def dns_answer(named: NamedServer, name: str, rdtype: str) -> list[str]:
    """What named answers to a plain query (as any resolver would ask)."""
    query = dns.message.make_query(name, rdtype)
    answer = dns.query.udp(query, named.address, port=named.port, timeout=3)
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rdata.to_text() for rrset in answer.answer if rrset.rdtype == wanted for rdata in rrset
    )
