"""Initial state DB: send ledger, suppressions, run summaries, quarantined rows.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("occasion_key", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("message_key", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("provider", sa.String(16)),
        sa.Column("provider_message_id", sa.String(128)),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("campaign", "occasion_key", "customer_id", name="uq_ledger_occasion"),
    )
    op.create_index("ix_ledger_campaign_status", "send_ledger", ["campaign", "status"])
    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(254), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "run_summaries",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("audience", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("quarantined", sa.Integer, nullable=False, server_default="0"),
        sa.Column("details", sa.JSON),
    )
    op.create_index("ix_runs_campaign_started", "run_summaries", ["campaign", "started_at"])
    op.create_table(
        "quarantined_rows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("row_key", sa.String(64), nullable=False),
        sa.Column("check_name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_quarantine_run", "quarantined_rows", ["run_id"])


def downgrade() -> None:
    op.drop_table("quarantined_rows")
    op.drop_table("run_summaries")
    op.drop_table("suppressions")
    op.drop_index("ix_ledger_campaign_status", "send_ledger")
    op.drop_table("send_ledger")
