"""relays: the SRV weight last published in the zone, and when

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relays", schema=None) as batch_op:
        batch_op.add_column(sa.Column("published_weight", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("weight_published_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("relays", schema=None) as batch_op:
        batch_op.drop_column("weight_published_at")
        batch_op.drop_column("published_weight")
