"""Alembic environment: runs on the connection db.upgrade_database passes in."""

from __future__ import annotations

from alembic import context
from altmesh_dashboard.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through the dashboard: flask --app altmesh_dashboard db upgrade"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
