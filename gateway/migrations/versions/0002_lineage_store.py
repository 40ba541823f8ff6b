"""lineage store: external events, delivery retries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lineage_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=20), nullable=False, server_default="datagate")
        )
        batch_op.add_column(
            sa.Column("event_kind", sa.String(length=20), nullable=False, server_default="RunEvent")
        )
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("run_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column("event_type", existing_type=sa.String(length=20), nullable=True)
        batch_op.alter_column(
            "job_namespace",
            existing_type=sa.String(length=200),
            type_=sa.String(length=1000),
            nullable=True,
        )
        batch_op.alter_column(
            "job_name",
            existing_type=sa.String(length=400),
            type_=sa.String(length=1000),
            nullable=True,
        )
        batch_op.create_index("ix_lineage_event_delivered_at", ["delivered_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lineage_event", schema=None) as batch_op:
        batch_op.drop_index("ix_lineage_event_delivered_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("event_kind")
        batch_op.drop_column("origin")
