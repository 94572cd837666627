"""Claims owned by a task attempt: `requested_at` on ledger rows (handed to the provider), and a run
heartbeat on run summaries (a run whose heartbeat stopped is dead: the recovery step finishes it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_ledger") as batch:
        batch.add_column(sa.Column("requested_at", sa.DateTime, nullable=True))
    with op.batch_alter_table("run_summaries") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime, nullable=True))
    op.create_index("ix_ledger_run_status", "send_ledger", ["run_id", "status"])
    op.create_index("ix_runs_status", "run_summaries", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", "run_summaries")
    op.drop_index("ix_ledger_run_status", "send_ledger")
    with op.batch_alter_table("run_summaries") as batch:
        batch.drop_column("heartbeat_at")
    with op.batch_alter_table("send_ledger") as batch:
        batch.drop_column("requested_at")
