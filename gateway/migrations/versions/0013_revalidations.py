"""revalidations too large to answer at once, run by workers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revalidation",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("contract_version", sa.String(length=100), nullable=False),
        sa.Column("contract_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_revalidation_dataset", "revalidation", ["dataset"])
    op.create_index("ix_revalidation_status", "revalidation", ["status"])


def downgrade() -> None:
    op.drop_index("ix_revalidation_status", table_name="revalidation")
    op.drop_index("ix_revalidation_dataset", table_name="revalidation")
    op.drop_table("revalidation")
