"""Cheaper outcome updates: no ledger index on `status`, and room in each page for updated rows.

The fence (`requested_at`) and the outcome (`status`, message id, error) change no indexed column
any more, so PostgreSQL updates them in place (HOT: no index entries written) when the page has
room, which fillfactor 50 keeps; InnoDB and SQLite maintain fewer index entries per update. The
status indexes become `campaign` and `run_id` alone (their queries filter by status on few rows).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_campaign_status", "send_ledger")
    op.drop_index("ix_ledger_run_status", "send_ledger")
    op.create_index("ix_ledger_campaign", "send_ledger", ["campaign"])
    op.create_index("ix_ledger_run", "send_ledger", ["run_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("ALTER TABLE send_ledger SET (fillfactor = 50)"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("ALTER TABLE send_ledger RESET (fillfactor)"))
    op.drop_index("ix_ledger_run", "send_ledger")
    op.drop_index("ix_ledger_campaign", "send_ledger")
    op.create_index("ix_ledger_run_status", "send_ledger", ["run_id", "status"])
    op.create_index("ix_ledger_campaign_status", "send_ledger", ["campaign", "status"])
