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
    text,
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
    # naive UTC: the attempt owning this `pending` row handed it to the provider (fenced by claim_token);
    # a dead attempt's row without it was never requested: taken over at once, not in doubt
    Column("requested_at", DateTime),
    UniqueConstraint("campaign", "occasion_key", "customer_id", name="uq_ledger_occasion"),
    Index("ix_ledger_campaign", "campaign"),  # no index on status: outcome updates stay HOT (0008)
    Index("ix_ledger_customer_created", "customer_id", "created_at"),
    Index("ix_ledger_claim_token", "claim_token"),
    Index("ix_ledger_run", "run_id"),
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
    # running | completed | failed | blocked | paused | rejected | skipped | interrupted | crashed
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("audience", Integer, nullable=False, default=0),
    Column("sent", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("details", JSON),
    Column("heartbeat_at", DateTime),  # naive UTC: renewed while the run's process lives
    Index("ix_runs_campaign_started", "campaign", "started_at"),
    Index("ix_runs_status", "status"),
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
    Column("url", Text),  # click: the link clicked, as it was in the mail (UTM tags included)
    Column("machine_open", Boolean),  # open: SendGrid's `sg_machine_open` (Apple Mail Privacy Protection)
    Column(
        "bounce", Integer
    ),  # bounce: BOUNCE_SOFT / BOUNCE_BLOCKED / BOUNCE_HARD (shopmail.state.engagement)
    UniqueConstraint("sg_event_id", name="uq_provider_events_sg_event_id"),
    Index("ix_provider_events_message_key", "message_key"),
    Index("ix_provider_events_event_occurred", "event", "occurred_at"),
    # the clicks of a campaign (reports): partial, so the other events cost it nothing, and covering
    # what the reports read of a click (no table lookup)
    Index(
        "ix_provider_events_clicks",
        "campaign",
        "occurred_at",
        "message_key",
        "customer_id",
        "url",
        sqlite_where=text("event = 'click'"),
        postgresql_where=text("event = 'click'"),
        mysql_length={"url": 191},  # MariaDB/MySQL: no partial index, a prefix of the text column
    ),
)

# One row per mail handed to the provider, and what became of it (shopmail/state/engagement.py): who
# and what (written just before the send; `test_variant`/`test_phase` for A/B tests), then the first
# time of each webhook event (written by the event webhook; min of what arrived, so duplicates and
# reordering change nothing). Reports group these rows (shopmail/results/engagement.py).
mail_results = Table(
    "mail_results",
    metadata,
    Column("message_key", String(64), primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("customer_id", Integer),
    Column("variant", String(64)),  # the audience's content variant (wakeup: detailed / basic)
    Column("test_variant", String(32)),  # the A/B test's variant (campaign file `[ab_test]`)
    Column("test_phase", String(8)),  # test | winner | split
    Column("language", String(8)),
    Column("segment", String(64)),
    Column("run_id", String(64)),  # the run that queued it (settled: the run that sent it)
    Column("queued_at", DateTime),  # naive UTC: recorded just before the send
    Column("sent_at", DateTime),  # naive UTC: the ledger's time of `sent` (`settle_sent`); NULL: not (yet)
    Column("delivered_at", DateTime),
    Column("deferred_at", DateTime),
    Column("bounced_at", DateTime),
    Column("bounce", Integer),  # the worst bounce seen: 1 soft, 2 blocked, 3 hard
    Column("dropped_at", DateTime),
    Column("opened_at", DateTime),  # first open by a person (a click counts as one)
    Column("machine_opened_at", DateTime),  # first machine open (sg_machine_open)
    Column("clicked_at", DateTime),
    Column("unsubscribed_at", DateTime),
    Column("spam_reported_at", DateTime),
    Index("ix_mail_results_campaign_sent", "campaign", "sent_at"),
    Index("ix_mail_results_run", "run_id"),
    Index("ix_mail_results_customer", "customer_id"),
)

# A/B tests of campaigns with `[ab_test]` in winner mode: one row per test (campaign + test key), so a
# crashed run resumes the phase it was in (flows/ab_test.py).
ab_tests = Table(
    "ab_tests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(64), nullable=False),
    Column("test_key", String(128), nullable=False),  # the occasion the test is about (e.g. sale:bf_2026)
    Column("status", String(16), nullable=False),  # testing | waiting | decided | done
    Column("run_id", String(64)),  # the run that started the test
    Column("variants", JSON, nullable=False),  # variant names
    Column("metric", String(32), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("test_sent_at", DateTime),  # the test group's mails all went out
    Column("decide_after", DateTime),  # test_sent_at + the wait
    Column("decided_at", DateTime),
    Column("winner", String(32)),
    Column("decided_by", String(16)),  # test | marketer | no_difference
    Column("decision", JSON),  # the numbers and the sentence behind the decision
    Column("finished_at", DateTime),
    UniqueConstraint("campaign", "test_key", name="uq_ab_tests_campaign_key"),
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

# Series (campaign files with [[steps]]): one row per entry (the occasion: a cart, a registration, an
# order), written once; each step's mail is a send-ledger row keyed `<entry_key>:step<n>` (exactly once
# by the ledger), a step skipped for lateness or a condition an `expired` ledger row with the reason.
series_entries = Table(
    "series_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(64), nullable=False),
    Column("entry_key", String(120), nullable=False),  # e.g. cart:123 (occasion key without the step)
    Column("customer_id", Integer, nullable=False),
    Column("entered_at", DateTime, nullable=False),  # naive UTC: the moment the steps count from
    Column("holdout", Boolean, nullable=False),  # the whole series held out (one group per entry)
    Column("data", JSON, nullable=False),  # the audience row at entry: what every step's mail shows
    Column("run_id", String(64)),
    Column("created_at", DateTime, nullable=False),
    Column("exited_at", DateTime),  # naive UTC: left the series before its last step
    Column("exit_reason", String(32)),  # ordered | cart_changed | clicked | unsubscribed | other_series
    UniqueConstraint("campaign", "entry_key", name="uq_series_entries_key"),
    Index("ix_series_entries_customer", "customer_id"),
    Index("ix_series_entries_campaign_open", "campaign", "exited_at"),
)
