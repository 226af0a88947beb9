"""Streams across a chain of three real relay processes, A and C not linked:

    curl ─SOCKS5─> client ──> relay A ──> relay B ──> relay C ──> web / data services

named serves the services' signed records; every link rekeys every second (and after a few
thousand messages), and every relay appends what it can see of the streams to its capture file.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from altmesh.protocol import (
    LinkClosed,
    LinkConnection,
    StaticKeyPair,
    network_prefix,
    node_address,
)

from . import helpers
from .data_server import source_sha256
from .helpers import PYTHON, free_port
from .mesh_net import (
    MeshNet,
    SocksRefused,
    echo,
    first_stream_succeeds_within,
    socks_connect,
    status,
)

REKEY_SECONDS = 1
REJECT_SECONDS = 4
REKEY_MESSAGES = 20_000
MARKER = b"ALTMESH-CHAIN-PLAINTEXT-" + secrets.token_hex(8).encode()
LINKS = [("a", "b"), ("b", "c")]


class Chain:
    def __init__(self, net: MeshNet, site: Path, socks_port: int) -> None:
        self.net = net
        self.site = site
        self.socks_port = socks_port


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    workdir = tmp_path_factory.mktemp("chain")
    with MeshNet(
        workdir,
        ["a", "b", "c"],
        LINKS,
        services=["web", "data", "gone"],
        rekey_seconds=REKEY_SECONDS,
        reject_seconds=REJECT_SECONDS,
        rekey_messages=REKEY_MESSAGES,
        # Each rekey on its own line, soon after it happens (the default sums 10 s of them).
        events_aggregate_seconds=0.2,
    ) as net:
        site = workdir / "site"
        site.mkdir()
        (site / "index.html").write_bytes(b"<html><body>" + MARKER * 500 + b"</body></html>\n")
        (site / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
        http_port = free_port()
        server = [PYTHON, "-m", "http.server", "--bind", "127.0.0.1"]
        net.spawn("http", [*server, "--directory", str(site), str(http_port)])
        net.start_relays()
        net.wait_links_up(LINKS)
        net.start_service("web", "c", f"127.0.0.1:{http_port}")
        net.start_service("data", "c")
        client = net.start_client("client", "a")
        assert client.socks_port is not None
        first_stream_succeeds_within(client.socks_port, "data.alt", 20)
        yield Chain(net, site, client.socks_port)


def curl(chain: Chain, url: str) -> subprocess.CompletedProcess[bytes]:
    proxy = f"127.0.0.1:{chain.socks_port}"
    return subprocess.run(
        ["curl", "-sS", "--max-time", "60", "--socks5-hostname", proxy, url],
        capture_output=True,
        timeout=90,
    )


def test_curl_through_three_relays_fetches_pages_byte_exact(chain: Chain) -> None:
    for name in ("index.html", "blob.bin"):
        result = curl(chain, f"http://web.alt/{name}")
        assert result.returncode == 0, result.stderr
        assert result.stdout == (chain.site / name).read_bytes()


def test_the_client_is_told_the_relay_path_of_its_stream(chain: Chain) -> None:
    client = chain.net.attached["client"]

    async def run() -> list[list[str]]:
        reader, writer = await socks_connect(chain.socks_port, "data.alt", 9)
        writer.write(b"ECHO\nping")
        assert await reader.readexactly(4) == b"ping"
        paths = [s["path"] for s in status(client.node)["streams"]]
        writer.close()
        return paths

    paths = asyncio.run(run())
    # A knows its peer B by name; C, two relays away, by its key.
    assert ["a", "b", chain.net.relays["c"].node.public_b64[:8]] in paths
    assert ["a", "b", "c"] in [chain.net.relay_names(path) for path in paths]


def test_100_concurrent_streams_cross_the_chain_sha256_exact(
    chain: Chain, figures: dict[str, str]
) -> None:
    async def run() -> list[bool]:
        async with asyncio.timeout(180):
            return await asyncio.gather(
                *(echo(chain.socks_port, "data.alt", 64 * 1024 + i * 331) for i in range(100))
            )

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert results.count(True) == 100
    figures["100 concurrent echo streams over 3 relays (64-97 KiB each)"] = f"{elapsed:.2f} s"


def rekeys(chain: Chain) -> dict[str, int]:
    """Rekeys logged per link of the path, by the relay at its A-side (a summary line of
    aggregated events carries how many it stands for in `count`)."""
    prefix = network_prefix(helpers.PREFIX)
    net = chain.net
    ends = {
        "client-a": ("a", net.attached["client"].node),
        "a-b": ("a", net.relays["b"].node),
        "b-c": ("b", net.relays["c"].node),
        "c-data": ("c", net.attached["data"].node),
    }
    counts = {}
    for link, (relay, peer) in ends.items():
        address = str(node_address(prefix, peer.public))
        counts[link] = sum(
            int(event.get("count", 1))
            for event in net.relays[relay].node.security_events()
            if event["event"] == "rekey" and event.get("peer_address") == address
        )
    return counts


def test_1gib_crosses_the_chain_losslessly_while_every_link_rekeys(
    chain: Chain, figures: dict[str, str]
) -> None:
    total, seed = 1 << 30, 11
    expected = source_sha256(total, seed)
    before = rekeys(chain)

    async def run() -> tuple[int, str, float]:
        reader, writer = await socks_connect(chain.socks_port, "data.alt", 9)
        writer.write(f"SOURCE {total} {seed}\n".encode())
        started = time.monotonic()
        digest = hashlib.sha256()
        received = 0
        while data := await reader.read(1 << 20):
            digest.update(data)
            received += len(data)
        elapsed = time.monotonic() - started
        writer.close()
        return received, digest.hexdigest(), elapsed

    received, digest, elapsed = asyncio.run(asyncio.wait_for(run(), 400))
    assert received == total
    assert digest == expected
    time.sleep(1)  # the last interval's summaries are written within 0.2 s (+ timer slack)
    during = {link: count - before[link] for link, count in rekeys(chain).items()}
    assert min(during.values()) >= 3, f"too few rekeys during the transfer: {during}"
    figures["1 GiB through client-A-B-C-service (e2e + 4 links)"] = (
        f"{total / elapsed / 1e6:.1f} MB/s, {elapsed:.1f} s, rekeys per link: {during}"
    )


def test_no_relay_of_the_path_sees_service_plaintext(chain: Chain) -> None:
    page = (chain.site / "index.html").read_bytes()
    for _ in range(3):
        assert curl(chain, "http://web.alt/index.html").stdout == page
    captures = dict(chain.net.captures())
    assert set(captures) == {"a", "b", "c"}
    for name, captured in captures.items():
        assert len(captured) > 3 * len(page), name  # the pages really went through
        assert MARKER not in captured, name
        assert b"HTTP/1." not in captured, name
        assert b"GET /index.html" not in captured, name
        assert b"web.alt" not in captured, name


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_a_stalled_far_end_receiver_holds_every_relay_of_the_path_to_its_windows(
    chain: Chain, figures: dict[str, str]
) -> None:
    """The client asks data.alt for 1 GiB and never reads: per-hop credit stops the service
    after a few windows, so no relay of the path (nor the client) grows, and other streams
    keep flowing meanwhile."""
    net = chain.net
    watched = {name: net.relays[name].pid for name in ("a", "b", "c")}
    watched["client"] = net.attached["client"].proc.pid

    async def run() -> tuple[dict[str, float], bool]:
        before = {name: rss_mib(pid) for name, pid in watched.items()}
        _reader, writer = await socks_connect(chain.socks_port, "data.alt", 9)
        writer.write(b"SOURCE 1073741824 5\n")  # 1 GiB that nobody reads
        await asyncio.sleep(4)
        ok = await asyncio.wait_for(echo(chain.socks_port, "data.alt", 4 << 20), 60)
        await asyncio.sleep(2)
        growth = {name: rss_mib(pid) - before[name] for name, pid in watched.items()}
        writer.close()
        return growth, ok

    growth, ok = asyncio.run(run())
    assert ok
    figures["RSS growth with a stalled far-end receiver (MiB)"] = ", ".join(
        f"{name} {value:.1f}" for name, value in growth.items()
    )
    assert max(growth.values()) < 64, f"memory grew (MiB): {growth}"


def socks_reply_for(chain: Chain, host: str) -> int:
    async def run() -> int:
        try:
            _reader, writer = await socks_connect(chain.socks_port, host, 9)
        except SocksRefused as refused:
            return refused.reply
        writer.close()
        return 0

    return asyncio.run(asyncio.wait_for(run(), 20))


def test_a_destination_no_relay_announces_is_refused_as_no_route(chain: Chain) -> None:
    """gone.alt is in DNS but attached nowhere: relay A resets the stream with code 16, and the
    client turns it into SOCKS reply 3 (network unreachable: no route) and a log line that says
    so. Reply 4 is kept for a name that is not in the zone."""
    assert socks_reply_for(chain, "gone.alt") == 3
    client = chain.net.attached["client"]
    helpers.wait_until(
        lambda: "no route: no relay announces the address (reset code 16" in client.proc.errors(),
        5,
        "the client's log line",
    )
    text = chain.net.relays["a"].metrics()
    assert helpers.metric_value(text, 'altmesh_rejections_total{reason="no_route"}') >= 1


def test_a_hop_limit_below_the_path_length_refuses_the_stream(chain: Chain) -> None:
    """With hop_limit 2 on relay A (reloaded with SIGHUP), a stream may cross A and one more
    relay: data.alt, two relay links away, is refused by B with code 19 (SOCKS reply 6)."""
    net = chain.net
    net.hop_limit = 2
    net.write_relay_config("a")
    net.signal_relay("a", signal.SIGHUP)
    try:
        helpers.wait_until(
            lambda: socks_reply_for(chain, "data.alt") == 6, 10, "the hop limit to apply"
        )
        text = net.relays["b"].metrics()
        assert helpers.metric_value(text, 'altmesh_rejections_total{reason="hop_limit"}') >= 1
    finally:
        net.hop_limit = None
        net.write_relay_config("a")
        net.signal_relay("a", signal.SIGHUP)
    helpers.wait_until(lambda: socks_reply_for(chain, "data.alt") == 0, 10, "the default again")


def violations(chain: Chain, reason: str) -> int:
    return sum(
        1
        for event in chain.net.relays["a"].node.security_events()
        if event["event"] == "protocol_violation" and event.get("reason") == reason
    )


@pytest.mark.parametrize(
    ("reason", "misbehave"),
    [
        ("route_info_from_node", lambda conn, dest: conn.send_route_info(b"\x01\x01\x00\x00")),
        ("relay_open_from_node", lambda conn, dest: conn.open_stream(dest, 9, hops_left=15)),
    ],
)
def test_a_node_that_sends_a_relay_only_record_has_its_link_closed(
    chain: Chain, reason: str, misbehave: Callable[[LinkConnection, ipaddress.IPv6Address], object]
) -> None:
    """ROUTE_INFO and RELAY_OPEN are for relay links only: from a node's link (a key that is
    not a relay peer) they are a protocol violation, logged, and the link is closed."""
    relay_a = chain.net.relays["a"]
    before = violations(chain, reason)
    destination = node_address(
        network_prefix(helpers.PREFIX), chain.net.service_nodes["data"].public
    )

    async def run() -> list[object]:
        loop = asyncio.get_running_loop()
        conn = LinkConnection.initiator(
            helpers.link_config(),
            StaticKeyPair.generate(),
            relay_a.node.public,
            timestamps=helpers.TIMESTAMPS,
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", relay_a.port)
        conn.start(loop.time())
        seen: list[object] = []
        misbehaved = False
        async with asyncio.timeout(10):
            while True:
                if conn.established and not misbehaved:
                    misbehave(conn, destination)
                    misbehaved = True
                writer.write(conn.data_to_send(loop.time()))
                data = await reader.read(65536)
                if not data:
                    break
                conn.receive_data(data, loop.time())
                while (event := conn.next_event()) is not None:
                    seen.append(event)
        writer.close()
        return seen

    seen = asyncio.run(run())
    assert any(isinstance(e, LinkClosed) for e in seen), seen
    helpers.wait_until(lambda: violations(chain, reason) == before + 1, 5, f"{reason} event")
