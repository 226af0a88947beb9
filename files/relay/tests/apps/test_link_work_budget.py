"""The link adapter's work budget: a link whose records cost more than its budget is not read
until it has earned the deficit back, and record-dense links are read in small pieces."""

from __future__ import annotations

import asyncio
import time

from altmesh.net import link as netlink
from altmesh.net.link import LinkTransport, ReadBuffer
from altmesh.protocol import (
    Event,
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    ProtocolError,
    StaticKeyPair,
    TimestampIssuer,
    network_prefix,
    node_address,
)
from altmesh.protocol import records as R

PREFIX = network_prefix("fd12:3456:789a::/48")


class Quiet:
    def link_event(self, link: LinkTransport[None], event: Event) -> None:
        pass

    def link_failed(self, link: LinkTransport[None], error: ProtocolError) -> None:
        raise AssertionError(error)

    def link_lost(self, link: LinkTransport[None], reason: str) -> None:
        pass

    def link_writable(self, link: LinkTransport[None]) -> None:
        pass


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True
        self.written = bytearray()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0


def feed(link: LinkTransport[None], buffer: ReadBuffer, data: bytes) -> None:
    """Deliver `data` the way the loop does: into the shared buffer, in reads of its size."""
    while data:
        size = len(link.get_buffer(-1))
        piece, data = data[:size], data[size:]
        buffer.view[: len(piece)] = piece
        link.buffer_updated(len(piece))


def test_a_link_flooding_tiny_records_within_its_credit_is_paused_then_read_again() -> None:
    config = LinkConfig(network="testnet", prefix=PREFIX)
    server_key = StaticKeyPair.generate()

    async def main() -> tuple[bool, bool, int, int, int]:
        buffer = ReadBuffer()
        conn = LinkConnection.responder(
            config,
            [server_key],
            authorize=lambda _k: True,
            replay_store=MemoryReplayStore(),
            timestamps=TimestampIssuer(time.time),
        )
        link = LinkTransport(conn, Quiet(), None, read_buffer=buffer, work_rate=10_000)
        fake = FakeTransport()
        link.transport = fake  # type: ignore[assignment]
        assert len(link.get_buffer(-1)) == netlink.PRE_AUTH_READ  # before the handshake
        issuer = TimestampIssuer(time.time)
        peer = LinkConnection.initiator(
            config, StaticKeyPair.generate(), server_key.public, timestamps=issuer
        )
        peer.start(time.monotonic())
        conn.start(time.monotonic())
        feed(link, buffer, peer.data_to_send(time.monotonic()))
        peer.receive_data(bytes(fake.written), time.monotonic())
        assert conn.established and len(link.get_buffer(-1)) == netlink.READ_BUFFER_SIZE
        stream = peer.open_stream(node_address(PREFIX, server_key.public), 80)
        flood = peer.data_to_send(time.monotonic())
        one = R.encode(R.DataRecord(stream, b"x"))
        for _ in range(8):  # 8 x 8189 one-byte records: far more than the budget's burst
            peer._sender.seal(one * (65519 // len(one)), time.monotonic())
            flood += peer.data_to_send(time.monotonic())
        feed(link, buffer, flood)
        paused, pauses, dense = not fake.reading, link.work_pauses, len(link.get_buffer(-1))
        deadline = time.monotonic() + 10
        while not fake.reading and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return paused, fake.reading, pauses, dense, conn.stats.records_in

    paused, resumed, pauses, dense, records = asyncio.run(main())
    assert records > 50_000
    assert paused and pauses >= 1
    assert dense == netlink.DENSE_READ
    assert resumed  # the deficit was earned back
