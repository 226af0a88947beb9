"""Relay discovery kept up to date, with real processes: the network's DNS-SD relay set changes
while a client and a service run (a relay published, another withdrawn, by signed DNS UPDATEs
as the dashboard sends them), and both nodes read the set again every `dns_refresh_seconds`.

    client ──> a (priority 10, bootstrap in [[relays]]) <── data.alt service
               b (20): published at start, withdrawn later
               c (30): running from the start, published later
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest
from altmesh.client.uplink import EMPTY_SET_RETRY_SECONDS, LOSS_REFRESH_MIN_SECONDS

from . import helpers
from .test_failover import Failover, echo_once, failover_net, relay_set_records

REFRESH = 10.0  # the smallest dns_refresh_seconds allowed; the node adds up to 10 % jitter
# One refresh (with its jitter), the probe of the new relay, the signer and the load: a node
# that did not refresh at all would never see the change.
SEEN_WITHIN = 2 * REFRESH


@pytest.fixture
def changing(tmp_path: Path) -> Iterator[Failover]:
    options = f"dns_refresh_seconds = {REFRESH}\ncandidate_probe_seconds = 1\n"
    with failover_net(tmp_path, options, published=("a", "b")) as net:
        yield net


def update_relay_set(net: Failover, publish: str, withdraw: str) -> None:
    """One signed DNS UPDATE: `publish` joins the relay set, `withdraw` leaves it."""
    keyring = dns.tsigkeyring.from_text({"updater": net.named.tsig_keys["updater"]})
    update = dns.update.UpdateMessage(
        "alt.", keyring=keyring, keyname="updater", keyalgorithm=net.named.tsig_algorithm
    )
    node, port, _proc = net.relays[publish]
    for line in relay_set_records({publish: (node, port)}):
        name, ttl, _class, rdtype, rdata = line.split(maxsplit=4)
        update.add(name, int(ttl), rdtype, rdata)
    update.delete("_altmesh._tcp", "PTR", f"{withdraw}._altmesh._tcp.alt.")
    update.delete(f"{withdraw}._altmesh._tcp")
    response = dns.query.tcp(update, net.named.address, port=net.named.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())


def candidate_names(node: helpers.Node) -> set[str]:
    return {row["name"] for row in helpers.node_status(node)["candidates"]}


def candidate_row(node: helpers.Node, name: str) -> dict[str, Any]:
    return next(row for row in helpers.node_status(node)["candidates"] if row["name"] == name)


def test_a_relay_published_later_is_measured_and_a_withdrawn_one_dropped_at_the_next_refresh(
    changing: Failover, figures: dict[str, str]
) -> None:
    net = changing
    for node in (net.client, net.service):
        assert candidate_names(node) == {"a", "b"}, node.name
    changed_at = time.monotonic()
    update_relay_set(net, publish="c", withdraw="b")
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - changed_at < 3 * SEEN_WITHIN:
        for node in (net.client, net.service):
            if node.name not in seen and candidate_names(node) == {"a", "c"}:
                seen[node.name] = time.monotonic() - changed_at
        time.sleep(0.2)
    figures["DNS-SD relay set change seen by client / service after"] = " / ".join(
        f"{seen[n.name]:.1f} s" if n.name in seen else "never" for n in (net.client, net.service)
    )
    assert set(seen) == {net.client.name, net.service.name}, seen
    assert max(seen.values()) < SEEN_WITHIN
    for node in (net.client, net.service):
        status = helpers.node_status(node)
        assert status["relay_name"] == "a"  # the current relay did not change with the set
        c_row = candidate_row(node, "c")
        assert c_row["source"] == "dns"
        assert c_row["priority"] == 30
        helpers.wait_until(
            lambda node=node: candidate_row(node, "c")["rtt_ms"] is not None,
            10,
            f"{node.name} measured c",
        )


@pytest.fixture
def unpublished(tmp_path: Path) -> Iterator[Failover]:
    """No relay in DNS-SD when the nodes start (a network being built), and the default refresh
    interval (60 s): only the bootstrap relay a, named by its [[relays]] entry."""
    with failover_net(tmp_path, "candidate_probe_seconds = 1\n", published=()) as net:
        yield net


def test_an_empty_relay_set_is_read_again_soon_not_after_the_whole_refresh_interval(
    unpublished: Failover, figures: dict[str, str]
) -> None:
    net = unpublished
    for node in (net.client, net.service):
        status = helpers.node_status(node)
        assert status["relay_name"] == "a"  # the configured name, before any DNS-SD answer
        assert status["discovery"]["relays"] == 0
    published_at = time.monotonic()
    update_relay_set(net, publish="b", withdraw="c")  # c was never published: a no-op
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - published_at < 3 * EMPTY_SET_RETRY_SECONDS:
        for node in (net.client, net.service):
            if node.name not in seen and candidate_names(node) == {"a", "b"}:
                seen[node.name] = time.monotonic() - published_at
        time.sleep(0.2)
    figures["relay set published after the nodes found it empty: seen by client / service"] = (
        " / ".join(
            f"{seen[n.name]:.1f} s" if n.name in seen else "never"
            for n in (net.client, net.service)
        )
    )
    assert set(seen) == {net.client.name, net.service.name}, seen
    assert max(seen.values()) <= 1.1 * EMPTY_SET_RETRY_SECONDS + 5.0, seen


@pytest.fixture
def rarely_read(tmp_path: Path) -> Iterator[Failover]:
    """Only relay a in DNS-SD at start, and a refresh interval far longer than the test."""
    options = "dns_refresh_seconds = 3600\ncandidate_probe_seconds = 1\n"
    with failover_net(tmp_path, options, published=("a",)) as net:
        yield net


def test_a_relay_published_since_the_last_read_is_found_at_once_when_the_relay_dies(
    rarely_read: Failover, figures: dict[str, str]
) -> None:
    """b joins the relay set after the nodes read it (their next read is an hour away); then a,
    their relay, is killed: they read the set again at once, and a new stream succeeds through
    b within 3 s."""
    net = rarely_read
    update_relay_set(net, publish="b", withdraw="c")  # c was never published: a no-op
    # the nodes read the set at start; a read after a loss waits until this long after the last
    time.sleep(LOSS_REFRESH_MIN_SECONDS)
    for node in (net.client, net.service):
        assert candidate_names(node) == {"a"}, node.name  # not read again yet

    async def kill_and_measure() -> float:
        assert await echo_once(net.socks_port, timeout=5)
        _node, _port, relay = net.relays["a"]
        killed_at = time.monotonic()
        relay.popen.send_signal(signal.SIGKILL)
        while not await echo_once(net.socks_port, timeout=0.5):
            assert time.monotonic() - killed_at < 20, "no new stream succeeded for 20 s"
            await asyncio.sleep(0.05)
        return time.monotonic() - killed_at

    seconds = asyncio.run(kill_and_measure())
    figures["relay died, its replacement published since the nodes' last read: new stream"] = (
        f"{seconds:.2f} s"
    )
    assert seconds < 3.0
    for node in (net.client, net.service):
        assert helpers.node_status(node)["relay_name"] == "b", node.name
