"""Shopmail's own state DB tables (SQLAlchemy Core); migrated by Alembic (`shopmail/migrations`)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

LEDGER_STATES = ("pending", "sent", "failed", "rejected", "holdout")

send_ledger = Table(
    "send_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(64), nullable=False),
    Column("occasion_key", String(128), nullable=False),
    Column("customer_id", Integer, nullable=False),
    Column("message_key", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("run_id", String(64)),
    Column("provider", String(16)),
    Column("provider_message_id", String(128)),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("lease_until", DateTime),  # naive UTC: a `pending` row's owner run is alive until then
    Column("claim_token", String(40)),  # the claim call that last took the row (which rows a run won)
    Column("doubt_since", DateTime),  # naive UTC: `in_doubt` since (request sent, no answer came)
    UniqueConstraint("campaign", "occasion_key", "customer_id", name="uq_ledger_occasion"),
    Index("ix_ledger_campaign_status", "campaign", "status"),
    Index("ix_ledger_customer_created", "customer_id", "created_at"),
    Index("ix_ledger_claim_token", "claim_token"),
)

customer_locks = Table(  # one row per customer ever capped at claim time: `SELECT ... FOR UPDATE` target
    "customer_locks",
    metadata,
    Column("customer_id", Integer, primary_key=True, autoincrement=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(254), primary_key=True),  # lower-cased
    Column("reason", String(32), nullable=False),  # unsubscribe | bounce | spam_report | manual
    Column("source", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

run_summaries = Table(
    "run_summaries",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("status", String(16), nullable=False),  # completed | failed | blocked
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("audience", Integer, nullable=False, default=0),
    Column("sent", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("details", JSON),
    Index("ix_runs_campaign_started", "campaign", "started_at"),
)

quarantined_rows = Table(
    "quarantined_rows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("table_name", String(64), nullable=False),
    Column("row_key", String(64), nullable=False),
    Column("check_name", String(128), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_quarantine_run", "run_id"),
)

provider_events = Table(
    "provider_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sg_event_id", String(100), nullable=False),
    Column("event", String(32), nullable=False),
    Column("email", String(254), nullable=False),  # lower-cased
    Column("message_key", String(64)),  # custom_args shopmail_key
    Column("campaign", String(64)),
    Column("customer_id", Integer),
    Column("sg_message_id", String(128)),
    Column("occurred_at", DateTime, nullable=False),  # the event's timestamp, naive UTC
    Column("received_at", DateTime, nullable=False),
    Column("reason", Text),
    UniqueConstraint("sg_event_id", name="uq_provider_events_sg_event_id"),
    Index("ix_provider_events_message_key", "message_key"),
    Index("ix_provider_events_event_occurred", "event", "occurred_at"),
)

customer_unsubscribes = Table(
    "customer_unsubscribes",
    metadata,
    Column("customer_id", Integer, primary_key=True, autoincrement=False),
    Column("campaign", String(64), nullable=False),  # the campaign whose link was used
    Column("created_at", DateTime, nullable=False),
    Column("source", String(64), nullable=False),
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("name", String(64), primary_key=True),  # e.g. "service:order_shipped"
    Column("value", DateTime, nullable=False),  # naive UTC: events before it were handled
    Column("updated_at", DateTime, nullable=False),
)

issued_coupons = Table(
    "issued_coupons",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("customer_id", Integer, nullable=False),
    Column("message_key", String(64), nullable=False),  # the mail that carries it: one coupon per mail
    Column("value", Numeric(12, 2), nullable=False),
    Column("percent", Boolean, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("run_id", String(64)),
    Column("issued_at", DateTime, nullable=False),
    UniqueConstraint("message_key", name="uq_issued_coupons_message_key"),
    Index("ix_issued_coupons_customer", "customer_id"),
)
