"""Seed inputs for the fuzz targets: valid messages, so the fuzzer starts past the easy checks.

.venv/bin/python files/relay/fuzz/seeds.py TARGET DIRECTORY
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from altmesh.protocol import records as R
from common import new_e2e_initiator, new_e2e_responder, new_initiator, new_responder

DESTINATION = ipaddress.IPv6Address("fd00:f022::1")


def record_seeds() -> list[bytes]:
    every = [
        R.OpenRecord(1, DESTINATION, 80),
        R.DataRecord(1, b"hello"),
        R.FinRecord(1),
        R.ResetRecord(1, 2, "cancelled"),
        R.WindowRecord(1, 4096),
        R.PingRecord(b"12345678"),
        R.PongRecord(b"12345678"),
        R.RouteInfoRecord(b"route"),
        R.RekeyInitRecord(1, bytes(134)),
        R.RekeyReplyRecord(1, bytes(74)),
        R.RekeySwitchRecord(1),
        R.CloseRecord("bye"),
    ]
    seeds = [R.encode(r) for r in every]
    seeds.append(b"".join(seeds[:6]))
    return seeds


def handshake_seeds() -> list[bytes]:
    initiator = new_initiator()
    message1 = initiator.data_to_send(0.0)
    responder = new_responder()
    responder.receive_data(message1, 0.0)
    message2 = responder.data_to_send(0.0)
    e2e1 = new_e2e_initiator().start()
    service = new_e2e_responder()
    service.receive(e2e1)
    return [message1, message2, e2e1, service.pending_output()]


def link_seeds() -> list[bytes]:
    def framed(*plaintexts: bytes) -> bytes:
        return b"".join(len(p).to_bytes(2, "big") + p for p in plaintexts)

    # Stream ids from the initiator (odd) towards the responder, the default target.
    opening = R.encode(R.OpenRecord(1, DESTINATION, 80)) + R.encode(R.DataRecord(1, b"x" * 64))
    return [
        b"\x00" + framed(opening, R.encode(R.FinRecord(1))),
        b"\x00"
        + framed(opening, R.encode(R.WindowRecord(1, 100)), R.encode(R.ResetRecord(1, 1, ""))),
        b"\x00" + framed(R.encode(R.PingRecord(b"abcdefgh")), R.encode(R.RouteInfoRecord(b"r"))),
        b"\x00" + framed(R.encode(R.RekeySwitchRecord(1))),
        b"\xff" + framed(R.encode(R.OpenRecord(2, DESTINATION, 22))),
    ]


SEEDS = {"records": record_seeds, "handshake": handshake_seeds, "link": link_seeds}


def write_seeds(target: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(SEEDS[target]()):
        (directory / f"seed-{n}").write_bytes(seed)


if __name__ == "__main__":
    write_seeds(sys.argv[1], Path(sys.argv[2]))
