"""Fuzz target: an established link receiving hostile but correctly encrypted messages.

The input is split into plaintexts (2-byte length prefixes); each is sealed with the peer's real
send key and fed to the link, so the fuzzer explores record handling, streams, flow control and
rekeying rather than stopping at the MAC. Only ProtocolError may escape, and after every
message these oracles must hold (a fault like "one record, one log line" or "a flood of tiny
records costs unbounded work" breaks one of them without raising anything):

- events per message: at most two per record (a flow-control violation is a notice and a reset)
  plus one; notices of each kind bounded by the link's limits, not by what the peer sends
  (unsolicited PONGs by their limit, ping_flood by one per write, flow_control by one per
  stream);
- work per byte: every record takes at least its 3-byte header (records_in <= bytes_in / 3);
- output per input: what the link sends in answer is at most 2x what it got, plus 4 KiB;
- memory: after the application drained events and output, the link retains at most one
  incomplete frame;
- the stream table's counts and credit are consistent (`LinkConnection.check_invariants`).

Run:
    .venv/bin/python files/relay/fuzz/fuzz_link.py -max_total_time=60 [CORPUS_DIR]
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports():
    from altmesh.protocol import ProtocolError
    from common import LinkOracle, established_pair, seal


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
    oracle = LinkOracle(target)
    now = 0.0
    try:
        for plaintext in plaintexts(data[1:]):
            message = seal(hostile, plaintext, now)
            records_before = target.stats.records_in
            target.receive_data(message, now)
            oracle.after(message, records_before, now)
            now += 1.0
            target.handle_timer(now)
            oracle.after(b"", target.stats.records_in, now)
    except ProtocolError:
        return


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
