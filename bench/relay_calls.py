"""Python calls a relay makes per forwarded record: a deterministic, in-process count.

A client `LinkConnection` and a service `LinkConnection` are wired to the two links of a relay
(`LinkTransport`s with fake socket transports, the relay's `Forwarder` and `NodeMetrics`, events
dispatched as `relay/server.py` does); 64-byte records go client -> relay -> service and back,
each delivered as one socket read. cProfile runs only while the relay handles its reads (from
`buffer_updated` to the writes it makes; the fake transport's `write` counts as 2 calls, where
the loop's is 1), so the figure is the relay's own work per record:
decryption, parsing, dispatch, forwarding, sealing, the timer and the metrics.

Usage: PYTHONPATH=<altmesh src> python bench/relay_calls.py [--round-trips 2000] [--top 25]
(run it with the PYTHONPATH of another checkout to count that code).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import ipaddress
import os
import pstats
import sys
import time
from typing import Any

from altmesh.metrics import NodeMetrics
from altmesh.net.link import LinkTransport, ReadBuffer
from altmesh.protocol import (
    Event,
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    StaticKeyPair,
    StreamData,
    StreamOpened,
    StreamWritable,
    TimestampIssuer,
    network_prefix,
    node_address,
)
from altmesh.relay.forwarding import Forwarder
from altmesh.relay.link_state import RelayLinkState

PREFIX = network_prefix("fd12:3456:789a::/48")
PING = 64


class FakeTransport:
    """What the loop's transport offers a link; writes are collected."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class RelayHandler:
    """The data path of `relay.server.Relay.link_event`: every open goes to the other link."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarding = forwarder
        self.target: LinkTransport[RelayLinkState] | None = None

    def link_event(self, link: LinkTransport[RelayLinkState], event: Event) -> None:
        match event:
            case StreamData(stream_id, data):
                self.forwarding.on_data(link, stream_id, data)
            case StreamWritable(stream_id):
                self.forwarding.on_writable(link, stream_id)
            case StreamOpened():
                assert self.target is not None
                self.forwarding.open_route(link, event, self.target, None)
            case _:
                pass

    def link_failed(self, link: object, error: object) -> None:
        raise AssertionError(f"link failed: {error}")

    def link_lost(self, link: object, reason: str) -> None:
        pass

    def link_writable(self, link: object) -> None:
        pass


def feed(
    link: LinkTransport[RelayLinkState], data: bytes, profile: cProfile.Profile | None = None
) -> None:
    """One socket read of `data` by the relay's link (the loop's part, copying the bytes into
    the link's buffer, is not profiled)."""
    view = link.get_buffer(len(data))
    assert len(view) >= len(data), "read larger than the link's read size"
    view[: len(data)] = data
    if profile is not None:
        profile.enable()
    link.buffer_updated(len(data))
    if profile is not None:
        profile.disable()


def pump(conn: LinkConnection) -> list[Event]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


async def run(round_trips: int, top: int) -> int:
    config = LinkConfig(network="testnet", prefix=PREFIX)
    relay_key, client_key, service_key = (StaticKeyPair.generate() for _ in range(3))
    metrics = NodeMetrics()
    forwarder = Forwarder(metrics, collections.Counter())
    handler = RelayHandler(forwarder)
    read_buffer = ReadBuffer()
    # the relay's two links: A accepts the client, B dials the service
    a = LinkTransport(
        LinkConnection.responder(
            config,
            [relay_key],
            authorize=lambda _key: True,
            replay_store=MemoryReplayStore(),
            timestamps=TimestampIssuer(time.time),
        ),
        handler,
        RelayLinkState(),
        read_buffer=read_buffer,
    )
    b = LinkTransport(
        LinkConnection.initiator(
            config, relay_key, service_key.public, timestamps=TimestampIssuer(time.time)
        ),
        handler,
        RelayLinkState(),
        read_buffer=read_buffer,
    )
    handler.target = b
    ta, tb = FakeTransport(), FakeTransport()
    client = LinkConnection.initiator(
        config, client_key, relay_key.public, timestamps=TimestampIssuer(time.time)
    )
    service = LinkConnection.responder(
        config,
        [service_key],
        authorize=lambda _key: True,
        replay_store=MemoryReplayStore(),
        timestamps=TimestampIssuer(time.time),
    )
    now = time.monotonic
    a.connection_made(ta)  # type: ignore[arg-type]
    b.connection_made(tb)  # type: ignore[arg-type]
    client.start(now())
    service.start(now())
    for _ in range(4):  # handshakes
        if data := client.data_to_send(now()):
            feed(a, data)
        if data := ta.take():
            client.receive_data(data, now())
        if data := tb.take():
            service.receive_data(data, now())
        if data := service.data_to_send(now()):
            feed(b, data)
    assert client.established and service.established and a.conn.established
    pump(client)
    pump(service)
    destination = node_address(PREFIX, service_key.public)
    assert isinstance(destination, ipaddress.IPv6Address)
    sid = client.open_stream(destination, 9)
    feed(a, client.data_to_send(now()))
    service.receive_data(tb.take(), now())
    service_sid = next(e.stream_id for e in pump(service) if isinstance(e, StreamOpened))
    ping = os.urandom(PING)

    def round_trip(profile: cProfile.Profile | None) -> None:
        client.send_stream_data(sid, ping)
        up = client.data_to_send(now())
        feed(a, up, profile)
        service.receive_data(tb.take(), now())
        for event in pump(service):
            if isinstance(event, StreamData):
                service.acknowledge(service_sid, len(event.data))
                service.send_stream_data(service_sid, event.data)
        down = service.data_to_send(now())
        feed(b, down, profile)
        client.receive_data(ta.take(), now())
        echoed = b"".join(e.data for e in pump(client) if isinstance(e, StreamData))
        assert echoed == ping, "the echo came back different"
        client.acknowledge(sid, len(echoed))

    for _ in range(200):  # warm up
        round_trip(None)
    profile = cProfile.Profile()
    started = time.perf_counter()
    for _ in range(round_trips):
        round_trip(profile)
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profile)
    # the profiler's own `disable` is no call of the relay's
    calls = sum(
        entry[1]
        for key, entry in stats.stats.items()  # type: ignore[attr-defined]
        if "_lsprof.Profiler" not in key[2]
    )
    records = 2 * round_trips
    print(
        f"relay: {records} records forwarded (64-byte DATA, one per socket read),"
        f" {calls / records:.1f} Python calls per record"
        f" (cProfile, incl. C functions); {elapsed / round_trips * 1e6:.0f} us per round trip"
        " of the whole harness under the profiler"
    )
    if top:
        stats.sort_stats("ncalls").print_stats(top)
    # without the profiler: CPU time of the relay's side alone
    relay_time = 0.0
    for _ in range(round_trips):
        client.send_stream_data(sid, ping)
        up = client.data_to_send(now())
        t0 = time.perf_counter()
        feed(a, up)
        relay_time += time.perf_counter() - t0
        service.receive_data(tb.take(), now())
        for event in pump(service):
            if isinstance(event, StreamData):
                service.acknowledge(service_sid, len(event.data))
                service.send_stream_data(service_sid, event.data)
        down = service.data_to_send(now())
        t0 = time.perf_counter()
        feed(b, down)
        relay_time += time.perf_counter() - t0
        client.receive_data(ta.take(), now())
        for event in pump(client):
            if isinstance(event, StreamData):
                client.acknowledge(sid, len(event.data))
    print(f"relay: {relay_time / records * 1e6:.1f} us per record without the profiler")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--top", type=int, default=0, help="print the N most called functions")
    args = parser.parse_args()
    return asyncio.run(run(args.round_trips, args.top))


if __name__ == "__main__":
    sys.exit(main())
