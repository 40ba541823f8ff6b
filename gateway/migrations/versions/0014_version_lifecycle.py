"""version lifecycle: tombstones (retention, erasure), holds, released model claims, drift
reports, a pinned drift reference, erasure requests and models flagged for retraining; a
content hash is unique among live versions only (a tombstone no longer stands for its data)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# SQLite keeps the constraint unnamed: batch mode names what it reflects by this convention.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
_SQLITE_NAME = "uq_dataset_version_dataset_id_content_hash"
_POSTGRES_NAME = "dataset_version_dataset_id_content_hash_key"


def _unique_name() -> str:
    return _POSTGRES_NAME if op.get_bind().dialect.name == "postgresql" else _SQLITE_NAME


def upgrade() -> None:
    with op.batch_alter_table("dataset_version", naming_convention=_NAMING) as batch:
        batch.drop_constraint(_unique_name(), type_="unique")
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("tombstone", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("hold", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("released", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("drift", sa.JSON(), nullable=True))
        batch.create_index("ix_dataset_version_content_hash", ["dataset_id", "content_hash"])
        batch.create_index("ix_dataset_version_deleted_at", ["deleted_at"])
    with op.batch_alter_table("dataset") as batch:
        batch.add_column(sa.Column("drift_reference", sa.Integer(), nullable=True))
    op.create_table(
        "erasure_request",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("override_holds", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_erasure_request_digest", "erasure_request", ["digest"])
    op.create_table(
        "model_flag",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(length=1000), nullable=False),
        sa.Column("model_version", sa.String(length=1000), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("erasure_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_flag_model", "model_flag", ["model"])


def downgrade() -> None:
    op.drop_index("ix_model_flag_model", table_name="model_flag")
    op.drop_table("model_flag")
    op.drop_index("ix_erasure_request_digest", table_name="erasure_request")
    op.drop_table("erasure_request")
    with op.batch_alter_table("dataset") as batch:
        batch.drop_column("drift_reference")
    with op.batch_alter_table("dataset_version") as batch:
        batch.drop_index("ix_dataset_version_deleted_at")
        batch.drop_index("ix_dataset_version_content_hash")
        for column in ("drift", "released", "hold", "tombstone", "deleted_at"):
            batch.drop_column(column)
        batch.create_unique_constraint(_unique_name(), ["dataset_id", "content_hash"])
