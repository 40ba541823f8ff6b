"""asynchronous ingests: the run's current stage and row count, and on PostgreSQL the job queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

On PostgreSQL the queue is procrastinate's schema (tables, types, functions and triggers, as the
pinned procrastinate version ships it), created here in the same migration transaction as the
rest, so a database is either at this revision with its queue or before it without. On SQLite
the embedded gateway runs jobs in-process and needs no queue tables.
"""

from __future__ import annotations

from pathlib import Path

import procrastinate
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PROCRASTINATE_SCHEMA = Path(procrastinate.__file__).parent / "sql" / "schema.sql"


def upgrade() -> None:
    with op.batch_alter_table("ingest_run") as batch:
        batch.add_column(sa.Column("stage", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("rows_total", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # The schema is plpgsql with '%' in it: run as one script, without parameters.
        driver = bind.connection.dbapi_connection
        assert driver is not None
        driver.cursor().execute(PROCRASTINATE_SCHEMA.read_text())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in (
            "procrastinate_events",
            "procrastinate_periodic_defers",
            "procrastinate_jobs",
            "procrastinate_workers",
        ):
            op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        for type_name in (
            "procrastinate_job_to_defer_v1",
            "procrastinate_job_event_type",
            "procrastinate_job_status",
        ):
            op.execute(f"DROP TYPE IF EXISTS {type_name} CASCADE")
    with op.batch_alter_table("ingest_run") as batch:
        batch.drop_column("rows_total")
        batch.drop_column("stage")
