"""gateway instances and run ownership

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_instance",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_run") as batch:
        batch.add_column(sa.Column("instance", sa.String(length=32), nullable=True))
        batch.create_index("ix_ingest_run_status", ["status"])


def downgrade() -> None:
    with op.batch_alter_table("ingest_run") as batch:
        batch.drop_index("ix_ingest_run_status")
        batch.drop_column("instance")
    op.drop_table("gateway_instance")
