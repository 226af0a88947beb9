"""The on-disk queue of security events for the dashboard, and the reporter's payloads
(events, load, mesh links, attached nodes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from altmesh.eventqueue import FILE_NAME, EventQueue
from altmesh.keyfile import encode_public_key
from altmesh.protocol import StaticKeyPair, network_prefix, node_address
from altmesh.relay.report_payloads import (
    MAX_DETAIL_BYTES,
    attached_report,
    dropped_event,
    event_body,
    links_report,
    relay_load,
    take_batch,
)


def _bodies(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"kind": "handshake_failed", "n": start + i} for i in range(count)]


def test_events_keep_their_order_and_their_ids_across_a_reopen(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path, 100)
    queue.put_many(_bodies(5))
    first = queue.peek(10)
    queue.close()
    again = EventQueue(tmp_path, 100)
    assert [e.id for e in again.peek(10)] == [e.id for e in first]
    assert [e.body["n"] for e in again.peek(10)] == [0, 1, 2, 3, 4]
    assert len({e.id for e in first}) == 5
    assert all(e.id.startswith(again.queue_id + "-") for e in first)


def test_removed_events_are_gone_and_ids_are_never_reused(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path, 100)
    queue.put_many(_bodies(3))
    sent = queue.peek(2)
    queue.remove(e.seq for e in sent)
    assert queue.depth == 1
    queue.put_many(_bodies(1, 3))
    ids = [e.id for e in queue.peek(10)]
    assert [e.body["n"] for e in queue.peek(10)] == [2, 3]
    assert not set(ids) & {e.id for e in sent}


def test_a_full_queue_drops_the_oldest_and_counts_them_once_reported(tmp_path: Path) -> None:
    dropped: list[int] = []
    queue = EventQueue(tmp_path, 100, on_dropped=dropped.append)
    queue.put_many(_bodies(130))
    assert queue.depth == 100
    assert [e.body["n"] for e in queue.peek(1)] == [30]
    assert dropped == [30] and queue.dropped_total == 30
    queue.remove(e.seq for e in queue.peek(50))
    assert queue.report_drops(dropped_event) == 30
    assert queue.report_drops(dropped_event) == 0  # reported once
    last = queue.peek(100)[-1]
    assert last.body["kind"] == "events_dropped"
    assert last.body["detail"]["count"] == 30
    queue.close()
    assert EventQueue(tmp_path, 100).dropped_total == 30  # kept in the file


def test_a_damaged_queue_file_is_moved_aside_and_a_new_queue_starts(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"not a database at all" * 100)
    queue = EventQueue(tmp_path, 100)
    queue.put_many(_bodies(1))
    assert queue.depth == 1
    assert [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]


def test_a_log_record_becomes_an_event_with_its_fields_as_detail_within_4_kb() -> None:
    record = {
        "time": "2026-12-02T01:00:00.000+00:00",
        "event": "handshake_failed",
        "node": "relay1",
        "peer": "127.0.0.1:4000\x1b[31m\x00",
        "reason": "bad_message",
        "count": 3,
        "detail": "x" * 10_000,
    }
    body = event_body(record)
    assert body["kind"] == "handshake_failed" and body["severity"] == "warning"
    assert body["peer"] == "127.0.0.1:4000[31m"  # control characters removed
    assert body["detail"]["reason"] == "bad_message" and body["detail"]["count"] == 3
    assert len(json.dumps(body["detail"], separators=(",", ":")).encode()) <= MAX_DETAIL_BYTES
    assert event_body({"event": "decryption_failed"})["severity"] == "critical"
    assert event_body({"event": "Not A Kind!"})["kind"] == "unknown"


def test_load_is_the_largest_of_cpu_links_and_buffer_fractions_within_0_and_1() -> None:
    assert relay_load(0.1, 50, 100, 0, 1000) == 0.5
    assert relay_load(0.7, 1, 100, 10, 1000) == 0.7
    assert relay_load(0.0, 0, 100, 900, 1000) == 0.9
    assert relay_load(1.8, 0, 100, 0, 1000) == 1.0  # CPU time of two threads in one interval
    assert relay_load(-0.1, 0, 100, 0, 1000) == 0.0


@dataclass
class LinkStatus:
    """The shape the mesh gives Relay.mesh_link_status() entries."""

    peer_name: str
    state: str
    rtt_ms: float | None
    public_key: str = ""


def test_links_report_each_valid_peer_once_with_its_rtt_and_attached_leaves_out_mesh_relays() -> (
    None
):
    prefix = network_prefix("fd12:3456:789a::/48")
    peer_key = StaticKeyPair.generate().public
    node_key = StaticKeyPair.generate().public
    links = [
        LinkStatus("relay2", "up", 12.3456, encode_public_key(peer_key)),
        LinkStatus("relay2", "down", None),  # the same peer again: first one wins
        LinkStatus("relay3", "connecting", None),
        LinkStatus("Bad_Name", "up", 1.0),
        LinkStatus("relay4", "sideways", 1.0),
        LinkStatus("relay5", "up", float("nan")),
        LinkStatus("relay6", "up", 10**9),
    ]
    assert links_report(links) == [
        {"peer": "relay2", "state": "up", "rtt_ms": 12.346},
        {"peer": "relay3", "state": "connecting", "rtt_ms": None},
        {"peer": "relay5", "state": "up", "rtt_ms": None},
        {"peer": "relay6", "state": "up", "rtt_ms": 600_000.0},
    ]
    attached = [node_address(prefix, node_key), node_address(prefix, peer_key)]
    assert attached_report(attached, links, prefix) == [str(node_address(prefix, node_key))]


def test_a_batch_holds_at_most_the_batch_limit_and_the_byte_bound_but_one_event_at_least(
    tmp_path: Path,
) -> None:
    queue = EventQueue(tmp_path, 100)
    queue.put_many(_bodies(10))
    assert [e.body["n"] for e in take_batch(queue, 4)] == [0, 1, 2, 3]
    one = len(json.dumps(queue.peek(1)[0].payload(), separators=(",", ":"))) + 1
    assert len(take_batch(queue, 10, max_bytes=3 * one)) == 3
    assert len(take_batch(queue, 10, max_bytes=1)) == 1
