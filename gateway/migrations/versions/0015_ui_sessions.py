"""web console sessions (signed in with an API key; the cookie's token stored hashed)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_session",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ui_session_expires_at", "ui_session", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_ui_session_expires_at", table_name="ui_session")
    op.drop_table("ui_session")
