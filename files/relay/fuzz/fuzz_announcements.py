"""Fuzz target: ROUTE_INFO payloads from hostile neighbors into a LinkStateRouter.

An input is a sequence of steps, each `op (1) · length (2, big-endian) · payload (length)`: the
low bit of `op` picks one of two neighbors, bits 1-3 advance the clock by that many seconds
(times 37, so lifetimes and throttles run out), bit 4 runs the timers, bit 5 drains the output.
After every step the router must hold:

- no exception from `receive` but a ProtocolError (RoutingError), none from the other calls;
- the database within its limits (origins, destinations per origin, accounted bytes);
- every payload it sends within MAX_PAYLOAD_LEN and accepted by the reference parser;
- events bounded (at most one per neighbor and fault kind, plus two).

Run:
    .venv/bin/python files/relay/fuzz/seeds_announcements.py /tmp/corpus-routes
    .venv/bin/python files/relay/fuzz/fuzz_announcements.py -max_total_time=60 /tmp/corpus-routes
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import typing

import atheris

with atheris.instrument_imports():
    from altmesh.mesh import (
        FaultKind,
        LinkStateRouter,
        RoutingConfig,
        RoutingError,
        decode_payload,
    )
    from altmesh.mesh.constants import MAX_PAYLOAD_LEN

PREFIX = ipaddress.IPv6Network("fd00:f022::/48")
CONFIG = RoutingConfig(
    max_origins=16,
    max_destinations_per_origin=40,
    max_database_bytes=96 * 1024,
    prefix=PREFIX,
)
SELF = bytes([0xA0]) * 32
NEIGHBORS = (bytes([0xB1]) * 32, bytes([0xB2]) * 32)
FAULT_KINDS = len(typing.get_args(FaultKind))


def new_router() -> LinkStateRouter:
    router = LinkStateRouter(SELF, now=0.0, first_sequence=1, config=CONFIG)
    for neighbor in NEIGHBORS:
        router.neighbor_up(neighbor, 0.0)
        router.observe_rtt(neighbor, 0.01, 0.0)
    router.set_destinations([PREFIX[1], PREFIX[2]], 0.0)
    router.handle_timer(0.0)
    return router


def steps(data: bytes) -> typing.Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 3 <= len(data):
        op, length = data[offset], int.from_bytes(data[offset + 1 : offset + 3], "big")
        yield op, data[offset + 3 : offset + 3 + length]
        offset += 3 + length


def check(router: LinkStateRouter, now: float) -> None:
    stats = router.stats
    assert stats.origins <= CONFIG.max_origins, stats
    assert stats.database_bytes <= CONFIG.max_database_bytes, stats
    assert stats.destinations <= CONFIG.max_origins * CONFIG.max_destinations_per_origin, stats
    events = router.take_events()
    assert len(events) <= len(NEIGHBORS) * FAULT_KINDS + 2, events


def test_one_input(data: bytes) -> None:
    router = new_router()
    now = 0.0
    for op, payload in steps(data):
        now += ((op >> 1) & 0x7) * 37.0
        with contextlib.suppress(RoutingError):  # the only exception peer input may raise
            router.receive(NEIGHBORS[op & 1], payload, now)
        if op & 0x10 or now >= router.next_timer_deadline():
            router.handle_timer(now)
        if op & 0x20:
            for neighbor, sent in router.messages_to_send(now):
                assert neighbor in NEIGHBORS
                assert len(sent) <= MAX_PAYLOAD_LEN
                decode_payload(sent, prefix=PREFIX)  # what we send is always well formed
        check(router, now)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
