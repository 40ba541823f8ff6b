"""quarantine: rows held back for review, sealed; runs that replay or correct them

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_run") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="ingest")
        )
        batch.add_column(sa.Column("quarantine_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_ingest_run_quarantine_id", ["quarantine_id"])
    op.create_table(
        "quarantine_batch",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=36), sa.ForeignKey("ingest_run.id"), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=False),
        sa.Column("rows_held", sa.BigInteger(), nullable=False),
        sa.Column("rows_released", sa.BigInteger(), nullable=False),
        sa.Column("rows_discarded", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("held_failures", sa.JSON(), nullable=False),
        sa.Column("classified", sa.JSON(), nullable=True),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("storage_key", sa.String(length=1000), nullable=True),
        sa.Column("key_seed", sa.String(length=64), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("contract_version", sa.String(length=100), nullable=False),
        sa.Column("contract_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("uploader", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=True),
        sa.Column("close_reason", sa.String(length=1000), nullable=True),
    )
    op.create_index("ix_quarantine_batch_dataset", "quarantine_batch", ["dataset"])
    op.create_index("ix_quarantine_batch_status", "quarantine_batch", ["status"])
    op.create_index("ix_quarantine_batch_expires_at", "quarantine_batch", ["expires_at"])


def downgrade() -> None:
    op.drop_table("quarantine_batch")
    with op.batch_alter_table("ingest_run") as batch:
        batch.drop_index("ix_ingest_run_quarantine_id")
        batch.drop_column("quarantine_id")
        batch.drop_column("kind")
