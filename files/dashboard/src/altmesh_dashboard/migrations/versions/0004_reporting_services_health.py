"""event ids, attached nodes, service tokens and services, health probe

- security_events.event_id: the relay's id of each event, unique per relay, so a re-sent batch
  is stored once; events stored before this migration get `legacy-<row id>`.
- relays.attached_digest and the attachments table: the nodes a relay's heartbeat lists.
- api_tokens.kind and service_name (relay_name becomes optional): service tokens.
- services: names published through the API.
- health_probe: the row /health rewrites to prove the database takes writes.
- relays.links (JSON) replaces the links table, so a heartbeat is one UPDATE of the relay's row;
  the links reappear with each relay's next heartbeat.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.String(length=64), nullable=True))
    op.execute("UPDATE security_events SET event_id = 'legacy-' || CAST(id AS VARCHAR(20))")
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.alter_column("event_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(
            "uq_security_events_relay_event_id", ["relay_id", "event_id"]
        )

    with op.batch_alter_table("relays", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attached_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("links", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
    op.drop_table("links")
    op.create_table(
        "attachments",
        sa.Column("relay_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.ForeignKeyConstraint(["relay_id"], ["relays.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("relay_id", "address"),
    )
    op.create_index("ix_attachments_address", "attachments", ["address"], unique=False)

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="relay", nullable=False)
        )
        batch_op.add_column(sa.Column("service_name", sa.String(length=253), nullable=True))
        batch_op.alter_column("relay_name", existing_type=sa.String(length=63), nullable=True)

    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )

    health_probe = op.create_table(
        "health_probe",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(health_probe, [{"id": 1, "written_at": 0.0}])


def downgrade() -> None:
    op.drop_table("health_probe")
    op.drop_table("services")
    op.execute("DELETE FROM api_tokens WHERE kind <> 'relay'")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("relay_name", existing_type=sa.String(length=63), nullable=False)
        batch_op.drop_column("service_name")
        batch_op.drop_column("kind")
    op.drop_index("ix_attachments_address", table_name="attachments")
    op.drop_table("attachments")
    with op.batch_alter_table("relays", schema=None) as batch_op:
        batch_op.drop_column("links")
        batch_op.drop_column("attached_digest")
    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("relay_id", sa.Integer(), nullable=False),
        sa.Column("peer_name", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rtt_ms", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["relay_id"], ["relays.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("relay_id", "peer_name"),
    )
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_security_events_relay_event_id", type_="unique")
        batch_op.drop_column("event_id")
