"""Ambiguity-aware sending: `doubt_since` on ledger rows whose request outcome is unknown.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_ledger") as batch:
        batch.add_column(sa.Column("doubt_since", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_ledger") as batch:
        batch.drop_column("doubt_since")
