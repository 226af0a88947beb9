"""The security event log: aggregated per source and interval, bounded overall, and loss-free on a
full disk (a real tmpfs, mounted and removed by the test)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from altmesh import events as ev

PEER = "192.0.2.7:40001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_flood_of_one_notice_from_one_link_is_one_line_then_one_summary_with_its_count(
    tmp_path: Path,
) -> None:
    clock = Clock()
    counted: list[str] = []
    log = ev.SecurityEventLog(
        tmp_path / "e.jsonl", "relay", on_event=lambda e, r: counted.append(r), clock=clock
    )
    for _ in range(6145):
        log.emit(ev.PROTOCOL_VIOLATION, "unsolicited_pong", peer=PEER, detail="PONG for no PING")
    assert [e["count"] for e in lines(tmp_path / "e.jsonl")] == [1]
    clock.now += ev.AGGREGATE_SECONDS
    log.emit(ev.PROTOCOL_VIOLATION, "unsolicited_pong", peer=PEER)  # opens the next interval
    first, summary, second = lines(tmp_path / "e.jsonl")
    assert (first["count"], summary["count"], second["count"]) == (1, 6144, 1)
    assert summary["reason"] == "unsolicited_pong" and summary["peer"] == PEER
    assert summary["interval"] == ev.AGGREGATE_SECONDS
    assert len(counted) == 6146  # metrics still count every occurrence
    log.close()


def test_occurrences_from_many_ports_of_one_source_are_grouped_by_that_source(
    tmp_path: Path,
) -> None:
    log = ev.SecurityEventLog(tmp_path / "e.jsonl", "relay", clock=Clock())
    for port in range(1000, 1500):
        log.emit(ev.RATE_LIMITED, "handshake_rate", source="192.0.2.7", peer=f"192.0.2.7:{port}")
    log.emit(ev.RATE_LIMITED, "handshake_rate", source="192.0.2.8", peer="192.0.2.8:1")
    log.close()  # ends the interval early: the summary is written
    records = lines(tmp_path / "e.jsonl")
    assert [(r["peer"].split(":")[0], r["count"]) for r in records] == [
        ("192.0.2.7", 1),
        ("192.0.2.8", 1),
        ("192.0.2.7", 499),
    ]


def test_the_log_writes_at_most_its_global_bound_and_reports_what_it_dropped(
    tmp_path: Path,
) -> None:
    clock = Clock()
    dropped: list[int] = []
    log = ev.SecurityEventLog(
        tmp_path / "e.jsonl",
        "relay",
        on_dropped=lambda _e, n: dropped.append(n),
        max_lines_per_second=10,
        max_lines_burst=50,
        clock=clock,
    )
    # 10,000 links each send one fault within a second: every group is new, so only the bound
    # stops them.
    for n in range(10_000):
        log.emit(ev.DECRYPTION_FAILED, "decrypt_failed", peer=f"10.0.{n // 256}.{n % 256}:9")
    clock.now += ev.AGGREGATE_SECONDS
    log.flush()
    records = lines(tmp_path / "e.jsonl")
    written = [r for r in records if r["event"] == ev.DECRYPTION_FAILED]
    assert len(written) == 50
    (report,) = [r for r in records if r["event"] == ev.EVENTS_DROPPED]
    assert report["reason"] == "rate_bound"
    assert report["count"] == 10_000 - 50
    assert sum(dropped) == report["count"] == log.dropped
    log.close()


def test_every_value_is_cut_so_that_a_line_stays_bounded(tmp_path: Path) -> None:
    log = ev.SecurityEventLog(tmp_path / "e.jsonl", "relay", clock=Clock())
    log.emit(ev.PROTOCOL_VIOLATION, "x" * 5000, peer="p" * 5000, detail="d" * 100_000)
    log.close()
    raw = (tmp_path / "e.jsonl").read_bytes()
    assert len(raw) <= ev.MAX_LINE_LEN
    assert lines(tmp_path / "e.jsonl")[0]["detail"].endswith("...")


@contextlib.contextmanager
def small_tmpfs(parent: Path, size: str) -> Iterator[Path]:
    mount = parent / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
        mount.rmdir()


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def test_on_a_full_disk_events_go_to_stderr_are_counted_and_reach_the_file_once_space_returns(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with small_tmpfs(tmp_path, "256k") as mount:
        unwritten: list[int] = []
        filler = fill(mount)
        log = ev.SecurityEventLog(
            mount / "events.jsonl", "relay", on_unwritten=unwritten.append, clock=Clock()
        )
        for n in range(40):  # forty links, each with one decryption failure
            log.emit(ev.DECRYPTION_FAILED, "decrypt_failed", peer=f"10.0.1.{n}:1")
        assert log.unwritten == sum(unwritten) == 40
        err = capfd.readouterr().err
        assert err.count('"decrypt_failed"') == 40
        assert "No space left on device" in err
        assert (mount / "events.jsonl").read_bytes() == b""

        filler.unlink()  # space returns: the next event brings the backlog with it
        log.emit(ev.DECRYPTION_FAILED, "decrypt_failed", peer="10.0.2.1:1")
        peers = [r["peer"] for r in lines(mount / "events.jsonl")]
        assert peers == [f"10.0.1.{n}:1" for n in range(40)] + ["10.0.2.1:1"]
        log.close()
