"""The packaged Alembic migrations build exactly the schema the models describe, on SQLite and
on PostgreSQL, running them again changes nothing, and the latest one can be undone and redone
without losing what it must keep."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from altmesh_dashboard.db import (
    MIGRATIONS_DIR,
    engine_of,
    get_session,
    migrate_database,
    upgrade_database,
)
from altmesh_dashboard.models import Base, Relay
from flask import Flask
from sqlalchemy import inspect, select, text


def test_migrated_schema_matches_the_models(app: Flask) -> None:
    with engine_of(app).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_upgrade_is_idempotent_and_records_the_head(app: Flask) -> None:
    upgrade_database(app)
    engine = engine_of(app)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert version == ScriptDirectory.from_config(config).get_current_head()
    assert {"users", "relays", "heartbeats", "audit_log", "api_tokens"} <= set(
        inspect(engine).get_table_names()
    )


def test_sqlite_runs_in_wal_mode(app: Flask) -> None:
    engine = engine_of(app)
    if engine.dialect.name != "sqlite":
        assert engine.dialect.name == "postgresql"
        return
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_db_upgrade_cli_reports_success(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0
    assert "up to date" in result.output


def _migrate(app: Flask, revision: str, *, down: bool = False) -> None:
    migrate_database(app, revision, downgrade=down)


def _rows(app: Flask, sql: str) -> list[tuple[Any, ...]]:
    with engine_of(app).connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def test_migration_0004_keeps_data_both_ways_and_downgrades_to_the_0003_schema(
    app: Flask,
) -> None:
    """Down to 0003 and up again with rows in every table 0004 changes: nothing that hangs off a
    relay is lost when SQLite rebuilds the relays table (it cascaded before), events stored
    before 0004 get `legacy-<id>` ids, relay tokens stay relay tokens, links start empty;
    the downgrade drops only what 0004 added (service tokens, services, attachments) and leaves
    the 0003 schema, and the upgrade after it ends on exactly the models' schema."""
    _migrate(app, "0003", down=True)
    tables = set(inspect(engine_of(app)).get_table_names())
    assert {"links", "relays", "security_events", "api_tokens"} <= tables
    assert not {"attachments", "services", "health_probe"} & tables
    with engine_of(app).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO relays (id, name, public_key, address, endpoints, registered_at)"
                " VALUES (1, 'r1', 'k', 'fd00::1', '[]', CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO links (relay_id, peer_name, state, rtt_ms, updated_at)"
                " VALUES (1, 'r2', 'up', 3.5, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO heartbeats (relay_id, received_at, load, active_streams, bytes_in,"
                " bytes_out, version, links) VALUES (1, CURRENT_TIMESTAMP, 0.5, 1, 2, 3, 'v',"
                " '[]')"
            )
        )
        for event in (10, 11):
            connection.execute(
                text(
                    "INSERT INTO security_events (id, relay_id, occurred_at, received_at, kind,"
                    " severity, detail) VALUES (:id, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP,"
                    " 'handshake_failure', 'warning', '{}')"
                ),
                {"id": event},
            )
        connection.execute(
            text(
                "INSERT INTO api_tokens (relay_name, token_hash, created_at, created_by)"
                " VALUES ('r1', 'h1', CURRENT_TIMESTAMP, 'test')"
            )
        )

    _migrate(app, "0004")
    assert _rows(app, "SELECT count(*) FROM heartbeats") == [(1,)]
    assert _rows(app, "SELECT id, event_id FROM security_events ORDER BY id") == [
        (10, "legacy-10"),
        (11, "legacy-11"),
    ]
    assert _rows(app, "SELECT kind, relay_name, service_name FROM api_tokens") == [
        ("relay", "r1", None)
    ]
    with app.app_context():
        relay = get_session().scalar(select(Relay))
        assert relay is not None and relay.links == [] and relay.attached_digest is None
    with engine_of(app).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_tokens (kind, service_name, token_hash, created_at, created_by)"
                " VALUES ('service', 'web.alt.', 'h2', CURRENT_TIMESTAMP, 'test')"
            )
        )
        connection.execute(
            text("INSERT INTO attachments (relay_id, address) VALUES (1, 'fd00::9')")
        )
        connection.execute(
            text(
                "INSERT INTO services (name, public_key, address, registered_at, updated_at)"
                " VALUES ('web.alt.', 'k', 'fd00::9', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )

    _migrate(app, "0003", down=True)
    assert not {"attachments", "services", "health_probe"} & set(
        inspect(engine_of(app)).get_table_names()
    )
    columns = {c["name"] for c in inspect(engine_of(app)).get_columns("api_tokens")}
    assert {"kind", "service_name"}.isdisjoint(columns)
    assert _rows(app, "SELECT relay_name FROM api_tokens") == [("r1",)]  # the service's went
    assert "event_id" not in {
        c["name"] for c in inspect(engine_of(app)).get_columns("security_events")
    }
    assert _rows(app, "SELECT id FROM security_events ORDER BY id") == [(10,), (11,)]
    assert _rows(app, "SELECT name FROM relays") == [("r1",)]
    assert _rows(app, "SELECT count(*) FROM heartbeats") == [(1,)]

    _migrate(app, "head")
    with engine_of(app).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert _rows(app, "SELECT written_at FROM health_probe") == [(0.0,)]
