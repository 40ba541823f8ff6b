"""lineage edges: which run read or wrote which dataset version

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lineage_edge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("job", sa.String(length=1100), nullable=False),
        sa.Column("dataset", sa.String(length=1100), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("dataset_version", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["lineage_event.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lineage_edge_dataset", "lineage_edge", ["dataset", "direction"])
    op.create_index("ix_lineage_edge_job", "lineage_edge", ["job", "direction"])
    op.create_index("ix_lineage_edge_run", "lineage_edge", ["run_id"])


def downgrade() -> None:
    op.drop_table("lineage_edge")
