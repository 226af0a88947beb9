"""The packaged Alembic migrations build exactly the schema the models describe, on SQLite and
on PostgreSQL, and running them again changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from altmesh_dashboard.db import MIGRATIONS_DIR, engine_of, upgrade_database
from altmesh_dashboard.models import Base
from flask import Flask
from sqlalchemy import inspect, text


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
