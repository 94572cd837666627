"""Watermarks (service-mail poller) and issued coupons (coupon policy).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watermarks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "issued_coupons",
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("message_key", sa.String(64), nullable=False),
        sa.Column("value", sa.Numeric(12, 2), nullable=False),
        sa.Column("percent", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("issued_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("message_key", name="uq_issued_coupons_message_key"),
    )
    op.create_index("ix_issued_coupons_customer", "issued_coupons", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_issued_coupons_customer", "issued_coupons")
    op.drop_table("issued_coupons")
    op.drop_table("watermarks")
