"""one upload spread over many workers: the parts of a run and who took each

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_part",
        sa.Column("run_id", sa.String(length=36), sa.ForeignKey("ingest_run.id"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.Column("output_key", sa.String(length=1000), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("byte_size", sa.BigInteger(), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("outcomes", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "attempt", "index"),
    )
    op.create_index("ix_ingest_part_status", "ingest_part", ["status"])


def downgrade() -> None:
    op.drop_index("ix_ingest_part_status", table_name="ingest_part")
    op.drop_table("ingest_part")
