"""Engagement and A/B tests: link, machine open and bounce kind on provider events; `mail_results`
(one row per mail: who/what, then the first time of each webhook event); `ab_tests`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provider_events") as batch:
        batch.add_column(sa.Column("url", sa.Text, nullable=True))
        batch.add_column(sa.Column("machine_open", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("bounce", sa.Integer, nullable=True))
    op.create_index(
        "ix_provider_events_clicks",
        "provider_events",
        ["campaign", "occurred_at", "message_key", "customer_id", "url"],
        sqlite_where=sa.text("event = 'click'"),
        postgresql_where=sa.text("event = 'click'"),
        mysql_length={"url": 191},
    )
    op.create_table(
        "mail_results",
        sa.Column("message_key", sa.String(64), primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.Integer),
        sa.Column("variant", sa.String(64)),
        sa.Column("test_variant", sa.String(32)),
        sa.Column("test_phase", sa.String(8)),
        sa.Column("language", sa.String(8)),
        sa.Column("segment", sa.String(64)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("queued_at", sa.DateTime),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("delivered_at", sa.DateTime),
        sa.Column("deferred_at", sa.DateTime),
        sa.Column("bounced_at", sa.DateTime),
        sa.Column("bounce", sa.Integer),
        sa.Column("dropped_at", sa.DateTime),
        sa.Column("opened_at", sa.DateTime),
        sa.Column("machine_opened_at", sa.DateTime),
        sa.Column("clicked_at", sa.DateTime),
        sa.Column("unsubscribed_at", sa.DateTime),
        sa.Column("spam_reported_at", sa.DateTime),
    )
    op.create_index("ix_mail_results_campaign_sent", "mail_results", ["campaign", "sent_at"])
    op.create_index("ix_mail_results_run", "mail_results", ["run_id"])
    op.create_index("ix_mail_results_customer", "mail_results", ["customer_id"])
    op.create_table(
        "ab_tests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("test_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("variants", sa.JSON, nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("test_sent_at", sa.DateTime),
        sa.Column("decide_after", sa.DateTime),
        sa.Column("decided_at", sa.DateTime),
        sa.Column("winner", sa.String(32)),
        sa.Column("decided_by", sa.String(16)),
        sa.Column("decision", sa.JSON),
        sa.Column("finished_at", sa.DateTime),
        sa.UniqueConstraint("campaign", "test_key", name="uq_ab_tests_campaign_key"),
    )


def downgrade() -> None:
    op.drop_table("ab_tests")
    op.drop_index("ix_mail_results_customer", "mail_results")
    op.drop_index("ix_mail_results_run", "mail_results")
    op.drop_index("ix_mail_results_campaign_sent", "mail_results")
    op.drop_table("mail_results")
    op.drop_index("ix_provider_events_clicks", "provider_events")
    with op.batch_alter_table("provider_events") as batch:
        batch.drop_column("bounce")
        batch.drop_column("machine_open")
        batch.drop_column("url")
