"""Atomic claims: lease and claim token on ledger rows; per-customer lock rows for claim-time caps.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_ledger") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("claim_token", sa.String(40), nullable=True))
    op.create_index("ix_ledger_claim_token", "send_ledger", ["claim_token"])
    op.create_table(
        "customer_locks",
        sa.Column("customer_id", sa.Integer, primary_key=True, autoincrement=False),
    )


def downgrade() -> None:
    op.drop_table("customer_locks")
    op.drop_index("ix_ledger_claim_token", "send_ledger")
    with op.batch_alter_table("send_ledger") as batch:
        batch.drop_column("claim_token")
        batch.drop_column("lease_until")
