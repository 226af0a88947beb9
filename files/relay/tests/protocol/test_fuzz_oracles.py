"""The fuzz targets' oracles catch faults that raise nothing: with the record limits taken away,
a PONG flood turns into one notice per record (one log line each) and the link oracle fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from altmesh.protocol import ControlLimits, LinkConnection, RecordLimit
from altmesh.protocol import records as R

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

from common import CONFIG, LinkOracle, established_pair, seal  # noqa: E402

PONGS = R.encode(R.PongRecord(b"12345678")) * 500


def flood(target: LinkConnection, hostile: LinkConnection, oracle: LinkOracle) -> None:
    now = 0.0
    for _ in range(4):
        message = seal(hostile, PONGS, now)
        before = target.stats.records_in
        target.receive_data(message, now)
        oracle.after(message, before, now)
        now += 1.0


def test_the_link_oracle_holds_for_the_reference_limits() -> None:
    from altmesh.protocol import ControlFlood

    initiator, responder = established_pair()
    with pytest.raises(ControlFlood):
        flood(responder, initiator, LinkOracle(responder))


def test_the_link_oracle_catches_a_notice_per_record_when_the_limits_are_gone() -> None:
    unlimited = ControlLimits(unsolicited_pongs=RecordLimit(rate=1e9, burst=10**9))
    initiator, responder = established_pair()
    responder.config = CONFIG  # (the oracle judges by the reference limits)
    responder._budget = type(responder._budget)(unlimited)
    with pytest.raises(AssertionError, match="unsolicited_pong"):
        flood(responder, initiator, LinkOracle(responder, ControlLimits()))
