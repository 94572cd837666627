"""Index the send ledger by customer and time (frequency cap, attribution).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_customer_created", "send_ledger", ["customer_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_customer_created", "send_ledger")
