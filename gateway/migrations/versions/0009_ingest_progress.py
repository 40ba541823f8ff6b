"""ingests read in parts: rows and parts done so far, for whoever follows a run

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_run") as batch:
        batch.add_column(sa.Column("rows_done", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("parts_done", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_run") as batch:
        batch.drop_column("parts_done")
        batch.drop_column("rows_done")
