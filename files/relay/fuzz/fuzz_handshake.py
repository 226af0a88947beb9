"""Fuzz target: handshake parsing of links and end-to-end sessions, from raw bytes.

The input is fed (a) to a responder waiting for message 1, (b) to an initiator waiting for
message 2, (c) to an end-to-end responder. Only ProtocolError may escape. Run:
    .venv/bin/python files/relay/fuzz/fuzz_handshake.py -max_total_time=60 [CORPUS_DIR]
"""

from __future__ import annotations

import contextlib
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports():
    from altmesh.protocol import EndToEndSession, MemoryReplayStore, ProtocolError
    from common import RESPONDER_KEY, new_initiator, new_responder


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        new_responder().receive_data(data, 0.0)
    initiator = new_initiator()
    initiator.data_to_send()
    with contextlib.suppress(ProtocolError):
        initiator.receive_data(data, 0.0)
    service = EndToEndSession.responder(
        "fuzznet", [RESPONDER_KEY], authorize=lambda _k: True, replay_store=MemoryReplayStore()
    )
    with contextlib.suppress(ProtocolError):
        service.receive(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
