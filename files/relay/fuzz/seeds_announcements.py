"""Seed inputs for fuzz_announcements.py: steps carrying valid payloads, so that the fuzzer starts
past the layout checks (a neighbor and relays behind it, a relay over several fragments, an
announcement in the router's own name, more origins than the limits allow, time running out).

.venv/bin/python files/relay/fuzz/seeds_announcements.py DIRECTORY
"""

from __future__ import annotations

import sys
from pathlib import Path

from altmesh.mesh import Announcement, encode_announcement
from altmesh.mesh.wire import pack_payloads

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_announcements import NEIGHBORS, PREFIX, SELF

RUN_TIMERS, DRAIN = 0x10, 0x20


def relay(number: int) -> bytes:
    return bytes([number]) * 32


def step(op: int, *announcements: Announcement) -> bytes:
    (payload,) = pack_payloads([encode_announcement(a) for a in announcements])
    return bytes([op]) + len(payload).to_bytes(2, "big") + payload


def seeds() -> list[bytes]:
    first, second = NEIGHBORS
    neighbor = Announcement(
        first,
        3,
        3600,
        0,
        links=tuple(sorted([(SELF, 10), (relay(5), 20)])),
        addresses=(PREFIX[10],),
    )
    behind = Announcement(relay(5), 1, 600, 0, links=((first, 20),), addresses=(PREFIX[11],))
    big = [
        Announcement(relay(6), 2, 900, f, addresses=tuple(PREFIX[100 * f + n] for n in range(30)))
        for f in range(3)
    ]
    own = Announcement(SELF, 9, 3600, 0, addresses=(PREFIX[7],))
    crowd = [
        Announcement(relay(20 + n), 1, 300, 0, addresses=(PREFIX[500 + n],)) for n in range(30)
    ]
    return [
        step(DRAIN, neighbor, behind),
        step(RUN_TIMERS | DRAIN, neighbor) + step(1 | (3 << 1) | RUN_TIMERS | DRAIN, behind),
        step(DRAIN, *big) + step(7 << 1 | RUN_TIMERS | DRAIN, big[1]),
        step(1 | RUN_TIMERS | DRAIN, own),
        step(0, *crowd[:15]) + step(1 | DRAIN, *crowd[15:]),
        step(0, neighbor) + step((7 << 1) | RUN_TIMERS, behind) * 4 + step(DRAIN, neighbor),
        step(0, Announcement(second, 1, 60, 0, links=((SELF, 5),))),
    ]


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds()):
        (directory / f"seed-{n}").write_bytes(seed)


if __name__ == "__main__":
    write_seeds(Path(sys.argv[1]))
