"""Series entries: one row per entry of a multi-step campaign (the steps' mails are ledger rows).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "series_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("entry_key", sa.String(120), nullable=False),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("entered_at", sa.DateTime, nullable=False),
        sa.Column("holdout", sa.Boolean, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("exited_at", sa.DateTime),
        sa.Column("exit_reason", sa.String(32)),
        sa.UniqueConstraint("campaign", "entry_key", name="uq_series_entries_key"),
    )
    op.create_index("ix_series_entries_customer", "series_entries", ["customer_id"])
    op.create_index("ix_series_entries_campaign_open", "series_entries", ["campaign", "exited_at"])


def downgrade() -> None:
    op.drop_table("series_entries")
