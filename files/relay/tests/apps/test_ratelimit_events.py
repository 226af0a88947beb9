"""Handshake rate limiting per source, and security event lines with stable fields."""

from __future__ import annotations

import json
from pathlib import Path

from altmesh.events import BASE_FIELDS, RATE_LIMITED, SecurityEventLog
from altmesh.ratelimit import SourceRateLimiter


def test_rate_limiter_allows_a_burst_then_the_rate_per_source() -> None:
    limiter = SourceRateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.2", 0.0)  # other sources are unaffected
    assert not limiter.allow("10.0.0.1", 0.2)
    assert limiter.allow("10.0.0.1", 0.6)  # 0.6 s * 2/s refilled one token


def test_security_events_are_json_lines_with_the_base_fields_first(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    log = SecurityEventLog(
        tmp_path / "events.jsonl", "relay", on_event=lambda e, r: seen.append((e, r))
    )
    log.emit(RATE_LIMITED, "handshake_rate", peer="127.0.0.1:5555")
    log.close()
    record = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert tuple(record)[: len(BASE_FIELDS)] == BASE_FIELDS
    assert record["count"] == 1
    assert record["event"] == "rate_limited"
    assert record["reason"] == "handshake_rate"
    assert record["peer"] == "127.0.0.1:5555"
    assert seen == [("rate_limited", "handshake_rate")]
