"""A relay known only through DNS. Relays A and C, each with [mesh] and DNS discovery but no
peers in their configs, cannot reach each other: a client on A gets "no route" for the service
on C. Then relay N is published in the real signed zone exactly as the dashboard publishes
relays (docs/dashboard-dns.md) and started; A and C read the relay set, accept N (C's policy is
an allowlist that does not list N: a relay of the DNS set needs no entry) and link to it, and
streams from A to C go through N, all without a restart of A or C. Then, with named down, A is
restarted: the relays it learned from DNS were saved in its state and it links to N again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from altmesh.state import StateDB

from . import helpers
from .mesh_net import (
    MeshNet,
    SocksRefused,
    first_stream_succeeds_within,
    socks_connect,
    stream_path,
)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshNet]:
    workdir = tmp_path_factory.mktemp("dnsmesh")
    with MeshNet(
        workdir,
        ["a", "c", "n"],
        [],
        services=["data"],
        dns_discovery=True,
        dns_refresh_seconds=5,
        allowlist={"c": ["data"], "a": ["client"]},
        capture=False,
    ) as net:
        net.relays["n"].peers = ["a", "c"]  # the new relay's own config lists the others
        net.start_relay("a")
        net.start_relay("c")
        net.start_service("data", "c")
        net.start_client("client", "a")
        yield net


def socks_port(net: MeshNet) -> int:
    port = net.attached["client"].socks_port
    assert port is not None
    return port


def reply_for_data(net: MeshNet) -> int:
    async def run() -> int:
        try:
            _reader, writer = await socks_connect(socks_port(net), "data.alt", 9)
        except SocksRefused as refused:
            return refused.reply
        writer.close()
        return 0

    return asyncio.run(asyncio.wait_for(run(), 20))


def test_a_relay_published_in_dns_is_linked_and_routed_through_without_restarts(
    net: MeshNet, figures: dict[str, str]
) -> None:
    assert reply_for_data(net) == 3  # no route from A to C yet (SOCKS5 "network unreachable")
    pids = {name: net.relays[name].pid for name in ("a", "c")}
    started = time.monotonic()
    net.publish_relay("n")
    net.start_relay("n")
    net.wait_links_up([("a", "n"), ("n", "c")], timeout=40)
    elapsed = first_stream_succeeds_within(socks_port(net), "data.alt", 20)
    figures["a relay published in DNS: first stream through it"] = (
        f"{time.monotonic() - started:.1f} s after publishing (DNS refresh 5 s)"
    )
    assert elapsed < 20
    client = net.attached["client"].node
    path = asyncio.run(stream_path(socks_port(net), client, "data.alt"))
    assert net.relay_names(path) == ["a", "n", "c"]
    assert {name: net.relays[name].pid for name in ("a", "c")} == pids
    assert "relay set from DNS: n" in net.relays["a"].log()


def test_relays_learned_from_dns_are_used_after_a_restart_while_dns_is_down(
    net: MeshNet,
) -> None:
    net.wait_links_up([("a", "n"), ("n", "c")], timeout=40)
    net.named.stop()
    relay_a = net.relays["a"]
    assert relay_a.proc is not None
    assert relay_a.proc.stop() == 0
    sequence = route_sequence(relay_a.node.state)
    assert sequence >= 1  # saved before each announcement was sent
    net.start_relay("a")
    net.wait_links_up([("a", "n")], timeout=30)
    helpers.wait_linked(net.attached["client"].node, timeout=30)
    first_stream_succeeds_within(socks_port(net), "data.alt", 20)
    log = relay_a.proc.errors()
    assert "1 mesh peers from DNS, saved before the restart" in log
    assert "keeping the 1 relays known" in log  # DNS did not answer; the saved peer was kept
    # Its announcements continued above the saved sequence: none in its name came back newer.
    helpers.wait_until(lambda: route_sequence(relay_a.node.state) > sequence, 10, "a new one")
    assert "an announcement in our name with sequence" not in log


def route_sequence(state_dir: Path) -> int:
    state = StateDB(state_dir)  # a second connection: WAL lets it read beside the relay's
    try:
        return state.route_sequence()
    finally:
        state.close()
