"""The reporter keeps copies of the dashboard's API limits (altmesh.relay.reporting cannot import
the dashboard's distribution, which relays do not install): pin them to the dashboard's own
rules (altmesh_dashboard.payloads), and check that what the reporter builds passes the
dashboard's validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

from altmesh.eventqueue import EventQueue
from altmesh.relay import report_payloads as reporting
from altmesh_dashboard import payloads


def test_the_reporters_limits_are_the_dashboards() -> None:
    assert reporting.MAX_LINKS == payloads.MAX_LINKS
    assert reporting.MAX_ATTACHED == payloads.MAX_ATTACHED
    assert reporting.MAX_RTT_MS == payloads.MAX_RTT_MS
    assert reporting.MAX_DETAIL_BYTES <= payloads.MAX_EVENT_DETAIL_BYTES
    assert reporting.EVENT_KIND.pattern == payloads.EVENT_KIND_PATTERN
    assert reporting.RELAY_NAME.pattern == payloads.LABEL_PATTERN
    assert set(reporting.SEVERITY.values()) | {"warning"} <= set(payloads.SEVERITIES)
    assert reporting.MAX_BATCH_BYTES < 524288  # the dashboard's default API_MAX_BODY_BYTES


def test_queued_events_and_a_drop_report_pass_the_dashboards_event_validation(
    tmp_path: Path,
) -> None:
    queue = EventQueue(tmp_path, 100)
    record = {
        "time": "2026-12-02T01:00:00.000+00:00",
        "event": "handshake_failed",
        "node": "relay1",
        "peer": "127.0.0.1:4000",
        "reason": "bad_message",
        "count": 2,
        "interval": 1.5,
        "detail": "y" * 9000,
    }
    queue.put_many([reporting.event_body(record), reporting.dropped_event(7)])
    batch = {"events": [event.payload() for event in queue.peek(10)]}
    parsed = payloads.EventBatch.model_validate_json(json.dumps(batch))  # as the API parses it
    assert [e.kind for e in parsed.events] == ["handshake_failed", "events_dropped"]
    assert all(re.match(payloads.EVENT_ID_PATTERN, e["id"]) for e in batch["events"])
