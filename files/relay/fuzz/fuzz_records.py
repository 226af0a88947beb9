"""Fuzz target: the record parser (plaintexts of transport messages).

Only ProtocolError may come out of `decode_all`; anything else is a crash. What parses must
encode back to the same bytes, and take at least 3 bytes per record (work per byte). Run:
    .venv/bin/python files/relay/fuzz/fuzz_records.py -max_total_time=60 [CORPUS_DIR]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from altmesh.protocol import ProtocolError
    from altmesh.protocol import records as R


def test_one_input(data: bytes) -> None:
    try:
        records = R.decode_all(data)
    except ProtocolError:
        return
    # What parses must encode back to the same bytes (the layout has one encoding).
    assert b"".join(R.encode(r) for r in records) == data
    assert len(records) * 3 <= len(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
