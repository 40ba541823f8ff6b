"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contract_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("source_file", sa.String(length=1000), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "fingerprint"),
    )
    with op.batch_alter_table("contract_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contract_version_name"), ["name"], unique=False)

    op.create_table(
        "dataset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_name"), ["name"], unique=True)

    op.create_table(
        "ingest_run",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("uploader", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=True),
        sa.Column("filename", sa.String(length=1000), nullable=True),
        sa.Column("format", sa.String(length=20), nullable=True),
        sa.Column("bytes_received", sa.BigInteger(), nullable=True),
        sa.Column("contract_name", sa.String(length=200), nullable=True),
        sa.Column("contract_version", sa.String(length=100), nullable=True),
        sa.Column("contract_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("created_version", sa.Boolean(), nullable=False),
        sa.Column("stage_timings", sa.JSON(), nullable=True),
        sa.Column("validation_report", sa.JSON(), nullable=True),
        sa.Column("pii_report", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_run_dataset"), ["dataset"], unique=False)

    op.create_table(
        "lineage_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=20), nullable=False),
        sa.Column("job_namespace", sa.String(length=200), nullable=False),
        sa.Column("job_name", sa.String(length=400), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lineage_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lineage_event_run_id"), ["run_id"], unique=False)

    op.create_table(
        "dataset_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(length=1000), nullable=False),
        sa.Column("schema_fields", sa.JSON(), nullable=False),
        sa.Column("contract_name", sa.String(length=200), nullable=False),
        sa.Column("contract_version", sa.String(length=100), nullable=False),
        sa.Column("contract_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=True),
        sa.Column("uploader", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("validation_summary", sa.JSON(), nullable=True),
        sa.Column("pii_summary", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["ingest_run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "content_hash"),
        sa.UniqueConstraint("dataset_id", "number"),
    )
    with op.batch_alter_table("dataset_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dataset_version_dataset_id"), ["dataset_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dataset_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_version_dataset_id"))

    op.drop_table("dataset_version")
    with op.batch_alter_table("lineage_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_event_run_id"))

    op.drop_table("lineage_event")
    with op.batch_alter_table("ingest_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_run_dataset"))

    op.drop_table("ingest_run")
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_name"))

    op.drop_table("dataset")
    with op.batch_alter_table("contract_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contract_version_name"))

    op.drop_table("contract_version")
