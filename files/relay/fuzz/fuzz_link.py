"""Fuzz target: an established link receiving hostile but correctly encrypted messages.

The input is split into plaintexts (2-byte length prefixes); each is sealed with the peer's real
send key and fed to the link, so the fuzzer explores record handling, streams, flow control and
rekeying rather than stopping at the MAC. Only ProtocolError may escape. Run:
    .venv/bin/python files/relay/fuzz/fuzz_link.py -max_total_time=60 [CORPUS_DIR]
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports():
    from altmesh.protocol import ProtocolError
    from common import established_pair, seal


def plaintexts(data: bytes) -> list[bytes]:
    parts = []
    offset = 0
    while offset + 2 <= len(data) and len(parts) < 16:
        size = int.from_bytes(data[offset : offset + 2], "big") % 4096
        parts.append(data[offset + 2 : offset + 2 + size])
        offset += 2 + size
    return parts


def test_one_input(data: bytes) -> None:
    initiator, responder = established_pair()
    target, hostile = (responder, initiator) if data[:1] != b"\xff" else (initiator, responder)
    now = 0.0
    try:
        for plaintext in plaintexts(data[1:]):
            target.receive_data(seal(hostile, plaintext), now)
            while target.next_event() is not None:
                pass
            target.data_to_send(now)
            now += 1.0
            target.handle_timer(now)
    except ProtocolError:
        return


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
