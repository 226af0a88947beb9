"""SQLite state: handshake timestamps survive a restart (a new process opening the same dir)."""

from __future__ import annotations

from pathlib import Path

from altmesh.state import SqliteReplayStore, StateDB


def test_replay_store_keeps_the_latest_timestamp_across_reopen(tmp_path: Path) -> None:
    state = StateDB(tmp_path)
    store = SqliteReplayStore(state)
    key = b"k" * 32
    assert store.last_timestamp(key) is None
    store.record_timestamp(key, b"\x40" + b"\x00" * 11)
    store.record_timestamp(key, b"\x40" + b"\x01" * 11)
    state.add_counter("handshakes", 2)
    state.close()

    reopened = SqliteReplayStore(StateDB(tmp_path))
    assert reopened.last_timestamp(key) == b"\x40" + b"\x01" * 11
    assert reopened.last_timestamp(b"x" * 32) is None
    assert reopened.state.counter("handshakes") == 2
