"""Fuzz target: handshake parsing of links and end-to-end sessions, from raw bytes.

The input is fed (a) to a responder waiting for message 1, (b) to an initiator waiting for
message 2, (c) to an end-to-end responder. Only ProtocolError may escape; and whatever the
bytes, a responder answers at most one message 2 (76 bytes framed) and hands out at most one
event, holds at most one incomplete message 1, and an end-to-end responder yields no plaintext
before its handshake. Run:
    .venv/bin/python files/relay/fuzz/fuzz_handshake.py -max_total_time=60 [CORPUS_DIR]
"""

from __future__ import annotations

import contextlib
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports():
    from altmesh.protocol import LinkConnection, ProtocolError
    from common import new_e2e_responder, new_initiator, new_responder


def test_one_input(data: bytes) -> None:
    responder = new_responder()
    with contextlib.suppress(ProtocolError):
        responder.receive_data(data, 0.0)
    check(responder, answer_limit=2 + 74)
    initiator = new_initiator()
    initiator.data_to_send(0.0)
    with contextlib.suppress(ProtocolError):
        initiator.receive_data(data, 0.0)
    check(initiator, answer_limit=0)
    with contextlib.suppress(ProtocolError):
        chunks = new_e2e_responder().receive(data)
        assert chunks == [], "plaintext before the end-to-end handshake completed"


def check(link: LinkConnection, answer_limit: int) -> None:
    events = 0
    while link.next_event() is not None:
        events += 1
    assert events <= 1, events
    if link.established:
        return  # (the bytes after message 1 are the link fuzzer's business)
    assert len(link.data_to_send(0.0)) <= answer_limit
    assert link.retained_bytes <= 2 + 134, link.retained_bytes


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
