"""`altmesh serve` publishes its service through a real dashboard (gunicorn) into a real signed
named, a client resolves it with DNSSEC and reaches it through a relay; `altmesh withdraw`
removes it again.

    altmesh serve --httpx--> gunicorn (altmesh_dashboard) --RFC 2136--> named
    altmesh up ---DNSSEC---------------------------------------------> named
    client --link--> relay --link--> service --> http.server
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from altmesh.protocol import network_prefix, node_address

from . import helpers
from .helpers import ALTMESH, PYTHON, RELAY, Node, Proc, free_port
from .reporting_support import DnsDashboard, dns_answer, dns_dashboard, write_token

PREFIX = network_prefix(helpers.PREFIX)
NAME = "web.alt"


@dataclass
class Lab:
    workdir: Path
    dns: DnsDashboard
    relay: Node
    relay_port: int
    site: Path
    http_port: int
    procs: list[Proc]

    def service_node(self, token: str) -> Node:
        """A service node for NAME whose [service] publishes through the dashboard."""
        web = Node("web", self.workdir)
        helpers.write_client_config(
            web,
            "service",
            self.relay,
            self.relay_port,
            service=(NAME, f"127.0.0.1:{self.http_port}"),
        )
        helpers.set_options(
            web.config,
            "service",
            dashboard_url=self.dns.dashboard.url,
            token_file=str(write_token(self.workdir / "web.token", token)),
        )
        return web

    def run(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, argv, self.workdir)
        self.procs.append(proc)
        return proc


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with dns_dashboard(tmp_path) as dns:
        relay = Node("relay", tmp_path)
        relay_port = free_port()
        helpers.write_relay_config(relay, relay_port, free_port())
        site = tmp_path / "site"
        site.mkdir()
        (site / "index.html").write_text("<p>published through the dashboard</p>\n")
        http_port = free_port()
        lab = Lab(tmp_path, dns, relay, relay_port, site, http_port, [])
        try:
            lab.run(
                "http",
                [PYTHON, "-m", "http.server", "-b", "127.0.0.1", "-d", str(site), str(http_port)],
            )
            lab.run("relay", [*RELAY, "--config", str(relay.config)]).wait_for_output(
                "altmesh-relay ready"
            )
            yield lab
        finally:
            for proc in reversed(lab.procs):
                proc.stop()


def _published(lab: Lab) -> tuple[list[str], list[str]]:
    named = lab.dns.named
    return dns_answer(named, NAME + ".", "AAAA"), dns_answer(named, NAME + ".", "TXT")


def test_a_service_registers_with_its_token_while_the_dashboard_comes_back_and_a_client_resolves_it_with_dnssec_and_reaches_it_through_a_relay(  # noqa: E501
    lab: Lab,
) -> None:
    web = lab.service_node(lab.dns.dashboard.service_token(NAME))
    address = str(node_address(PREFIX, web.public))
    # The dashboard is down when the service starts: gunicorn stopped, its socket still open,
    # so the registration times out and is retried with backoff.
    lab.dns.dashboard.stop()
    serve = lab.run("web", [*ALTMESH, "serve", "--config", str(web.config)])
    helpers.wait_linked(web)
    helpers.wait_until(
        lambda: "cannot publish web.alt yet (timeout" in serve.errors(), 30, "a failed attempt"
    )
    assert _published(lab) == ([], [])
    lab.dns.dashboard.restart()
    helpers.wait_until(lambda: _published(lab)[0] == [address], 90, "the AAAA record published")
    assert _published(lab)[1] == [f'"altmesh-key={web.public_b64}"']
    # The records may come from the attempt that timed out (gunicorn, started again, answers
    # what waited in its socket's backlog); the service's own retry then confirms them.
    helpers.wait_until(lambda: "published web.alt" in serve.errors(), 90, "the retry answered")

    client = Node("client", lab.workdir)
    forward_port = free_port()
    helpers.write_client_config(
        client,
        "client",
        lab.relay,
        lab.relay_port,
        dns_port=lab.dns.named.port,
        trust_anchor=lab.dns.named.trust_anchor,
        forwards=(f"{forward_port}:{NAME}:80",),
    )
    resolved = subprocess.run(
        [*ALTMESH, "resolve", NAME, "--config", str(client.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split() == [
        NAME,
        address,
        web.public_b64,
        "(DNSSEC",
        "validated)",
    ]
    lab.run("client", [*ALTMESH, "up", "--config", str(client.config)])
    helpers.wait_linked(client)
    page = httpx.get(f"http://127.0.0.1:{forward_port}/index.html", timeout=30)
    assert page.status_code == 200
    assert page.text == (lab.site / "index.html").read_text()


def test_altmesh_withdraw_removes_the_services_records_and_a_token_for_another_name_is_refused(
    lab: Lab,
) -> None:
    web = lab.service_node(lab.dns.dashboard.service_token(NAME))
    serve = lab.run("web", [*ALTMESH, "serve", "--config", str(web.config)])
    helpers.wait_until(lambda: _published(lab)[0] != [], 60, "the AAAA record published")
    serve.stop()
    # Stopping the service leaves it published: a restart must not make the name vanish.
    assert _published(lab)[0] == [str(node_address(PREFIX, web.public))]

    withdrawn = subprocess.run(
        [*ALTMESH, "withdraw", "--config", str(web.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert withdrawn.stdout.strip() == "web.alt: removed (DNS withdrawn)"
    assert _published(lab) == ([], [])

    # A token made for another name cannot publish this one: an error, not retried.
    write_token(lab.workdir / "web.token", lab.dns.dashboard.service_token("other.alt"))
    serve = lab.run("web2", [*ALTMESH, "serve", "--config", str(web.config)])
    helpers.wait_until(
        lambda: "dashboard refused to publish web.alt (auth)" in serve.errors(),
        30,
        "the refusal logged",
    )
    assert "not retried" in serve.errors()
    assert _published(lab) == ([], [])
