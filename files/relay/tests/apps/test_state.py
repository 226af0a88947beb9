"""SQLite state: handshake timestamps survive a restart (a new process opening the same dir)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from altmesh.state import (
    SCHEMA,
    SCHEMA_VERSION,
    SqliteReplayStore,
    StateDB,
    StateSchemaError,
    StoredPeer,
)


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


def test_mesh_peers_and_the_route_sequence_survive_a_reopen(tmp_path: Path) -> None:
    state = StateDB(tmp_path)
    assert state.mesh_peers() == [] and state.route_sequence() == 0
    peers = [
        StoredPeer("r2", (b"b" * 32,), ("192.0.2.2:7400",)),
        StoredPeer("r1", (b"a" * 32, b"p" * 32), ("192.0.2.1:7400", "relay1.example:7401")),
    ]
    state.replace_mesh_peers(peers)
    state.save_route_sequence(41)
    state.save_route_sequence(42)
    state.close()

    reopened = StateDB(tmp_path)
    assert reopened.mesh_peers() == sorted(peers, key=lambda p: p.name)
    assert reopened.route_sequence() == 42
    reopened.replace_mesh_peers(peers[:1])
    assert reopened.mesh_peers() == peers[:1]


def test_a_version_1_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.executescript(SCHEMA)
    db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    db.execute("INSERT INTO counters(name, value) VALUES ('handshakes_ok', 7)")
    db.commit()
    db.close()

    state = StateDB(tmp_path)
    assert state.counter("handshakes_ok") == 7
    state.replace_mesh_peers([StoredPeer("r1", (b"a" * 32,), ("192.0.2.1:7400",))])
    version = state.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (SCHEMA_VERSION,)


def test_a_database_of_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    StateDB(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StateSchemaError, match=r"state.sqlite3: schema version 99 is newer"):
        StateDB(tmp_path)


def test_replay_store_forgets_keys_older_than_its_freshness_window_and_refuses_their_replays(
    tmp_path: Path,
) -> None:
    from altmesh.protocol import tai64n
    from altmesh.protocol.replay import check_and_record

    wall = [1_700_000_000.0]
    store = SqliteReplayStore(StateDB(tmp_path), freshness_seconds=60, wallclock=lambda: wall[0])
    old = [bytes([n]) * 32 for n in range(1, 101)]
    for key in old:
        assert check_and_record(store, key, tai64n(wall[0]))
    assert len(store) == 100
    wall[0] += 61
    fresh = b"\xff" * 32
    assert check_and_record(store, fresh, tai64n(wall[0]))
    assert store.prune() == 100 and len(store) == 1
    # Forgotten, yet a replay of what they sent is refused: it is older than the window.
    assert not check_and_record(store, old[0], tai64n(wall[0] - 61))
    assert not check_and_record(store, fresh, tai64n(wall[0]))  # the ordinary rule still holds
    assert not check_and_record(store, b"\xfe" * 32, tai64n(wall[0] + 61))  # ahead: refused
    assert check_and_record(store, old[0], tai64n(wall[0]))  # a new handshake of it is fine


def test_a_replay_store_that_cannot_write_refuses_the_handshake_and_counts_it(
    tmp_path: Path,
) -> None:
    import sqlite3

    import pytest
    from altmesh.protocol import StoreUnavailable, tai64n

    failures: list[int] = []
    state = StateDB(tmp_path, on_write_failure=lambda: failures.append(1))
    store = SqliteReplayStore(state)
    state.db.close()
    state.db = sqlite3.connect(f"file:{state.path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StoreUnavailable):
        store.record_timestamp(b"k" * 32, tai64n(1_700_000_000.0))
    assert state.write_failures == len(failures) == 1
    assert store.last_timestamp(b"k" * 32) is None  # nothing half-recorded
    counted = len(failures)  # (the lookup's prune failed too, and was counted)
    assert not state.add_counters({"handshakes_ok": 3})
    assert len(failures) == counted + 1 == state.write_failures
