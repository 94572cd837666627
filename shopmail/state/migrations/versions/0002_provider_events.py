"""Provider events (SendGrid event webhook, deduplicated on sg_event_id) and customer unsubscribes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sg_event_id", sa.String(100), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("message_key", sa.String(64)),
        sa.Column("campaign", sa.String(64)),
        sa.Column("customer_id", sa.Integer),
        sa.Column("sg_message_id", sa.String(128)),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("reason", sa.Text),
        sa.UniqueConstraint("sg_event_id", name="uq_provider_events_sg_event_id"),
    )
    op.create_index("ix_provider_events_message_key", "provider_events", ["message_key"])
    op.create_index("ix_provider_events_event_occurred", "provider_events", ["event", "occurred_at"])
    op.create_table(
        "customer_unsubscribes",
        sa.Column("customer_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("customer_unsubscribes")
    op.drop_index("ix_provider_events_event_occurred", "provider_events")
    op.drop_index("ix_provider_events_message_key", "provider_events")
    op.drop_table("provider_events")
