"""What became of each mail: `mail_results`, one row per mail handed to the provider.

Two writers, each an upsert on the mail's `message_key`, so neither depends on the other's order:

- `record_mails` (the send step, just before the provider call): who and what — campaign, customer,
  content variant, A/B test variant and phase, language, segment, run; `settle_sent` then copies
  the ledger's time of `sent` (and the run that sent it) onto the row, once per row: reports count
  the rows by `sent_at` without joining the ledger;
- `record_outcomes` (the event webhook): the first time of each event — delivered, deferred, bounced
  (and how: soft / blocked / hard), dropped, opened by a person, opened by a machine, clicked,
  unsubscribed, reported as spam. Each column keeps the earliest time it was given (the bounce its
  worst kind), so a duplicated, replayed or reordered event stream gives the same row.

Reports (shopmail/results/engagement.py) group these rows: a month of a million-customer shop is one
indexed scan, not a join over every raw event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, literal_column, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shopmail.state.schema import mail_results, send_ledger
from shopmail.state.state_db import utcnow

BOUNCE_SOFT, BOUNCE_BLOCKED, BOUNCE_HARD = 1, 2, 3
BOUNCE_WORDS = {BOUNCE_SOFT: "soft bounce", BOUNCE_BLOCKED: "blocked", BOUNCE_HARD: "hard bounce"}
# SendGrid's `bounce_classification` values that say the receiving server refused the sender or the
# content (a block), not the address
BLOCK_CLASSES = frozenset({"Content", "Reputation", "Frequency or Volume Too High"})
# webhook event -> the mail_results column of its first time (opens: see `outcome_column`)
EVENT_COLUMNS = {
    "delivered": "delivered_at",
    "deferred": "deferred_at",
    "bounce": "bounced_at",
    "dropped": "dropped_at",
    "click": "clicked_at",
    "unsubscribe": "unsubscribed_at",
    "group_unsubscribe": "unsubscribed_at",
    "spamreport": "spam_reported_at",
}
TIME_COLUMNS = (
    "delivered_at",
    "deferred_at",
    "bounced_at",
    "dropped_at",
    "opened_at",
    "machine_opened_at",
    "clicked_at",
    "unsubscribed_at",
    "spam_reported_at",
)
FACT_COLUMNS = (
    "campaign",
    "customer_id",
    "variant",
    "test_variant",
    "test_phase",
    "language",
    "segment",
    "run_id",
)
_CHUNK = 1000


def bounce_kind(event: Mapping[str, Any]) -> int | None:
    """How a `bounce` event bounced: hard (`type` bounce: the address does not take mail; SendGrid
    suppresses it), blocked (`type` blocked, classified Content / Reputation / Frequency: the server
    refused the sender or the content), else soft (blocked for a technical or temporary reason,
    after SendGrid's 72 hours of deferrals). None for other events."""
    if event.get("event") != "bounce":
        return None
    if event.get("type") == "bounce":
        return BOUNCE_HARD
    if str(event.get("bounce_classification", "")) in BLOCK_CLASSES:
        return BOUNCE_BLOCKED
    return BOUNCE_SOFT


def outcome_column(event: str, machine_open: bool | None) -> str | None:
    """The `mail_results` column an event's time goes to (None: the event changes nothing there)."""
    if event == "open":
        return "machine_opened_at" if machine_open else "opened_at"
    return EVENT_COLUMNS.get(event)


def outcomes_by_mail(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`provider_events` rows -> one `mail_results` row per message key with the earliest time of each
    column (a click also counts as a person's open: it proves one) and the worst bounce."""
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        key = event.get("message_key")
        column = outcome_column(str(event.get("event")), event.get("machine_open"))
        if not key or column is None:
            continue
        row = rows.get(key)
        if row is None:
            row = rows[key] = dict.fromkeys(TIME_COLUMNS) | {
                "message_key": key,
                "campaign": event.get("campaign") or "",
                "customer_id": event.get("customer_id"),
                "bounce": None,
            }
        at = event["occurred_at"]
        for name in (column, "opened_at") if column == "clicked_at" else (column,):
            if row[name] is None or at < row[name]:
                row[name] = at
        if event.get("bounce"):
            row["bounce"] = max(row["bounce"] or 0, int(event["bounce"]))
    return [rows[key] for key in sorted(rows)]  # key order: concurrent upserts lock rows alike


def _upsert(conn: Connection) -> Any:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite_insert(mail_results)
    if dialect == "postgresql":
        return pg_insert(mail_results)
    if dialect in ("mysql", "mariadb"):
        return mysql_insert(mail_results)
    raise NotImplementedError(f"no upsert for {dialect}")


def _on_conflict(conn: Connection, statement: Any, values: Mapping[str, Any]) -> Any:
    if conn.dialect.name in ("mysql", "mariadb"):
        return statement.on_duplicate_key_update(**values)
    return statement.on_conflict_do_update(index_elements=[mail_results.c.message_key], set_=dict(values))


def _new(conn: Connection, statement: Any, name: str) -> Any:
    """The value the conflicting insert brought for `name`."""
    if conn.dialect.name in ("mysql", "mariadb"):
        return statement.inserted[name]
    return statement.excluded[name]


def _earliest(conn: Connection, old: Any, new: Any) -> Any:
    """The earlier of two nullable times (NULL only when both are)."""
    first, second = func.coalesce(old, new), func.coalesce(new, old)
    if conn.dialect.name == "sqlite":
        return func.min(first, second)  # SQLite's two-argument min() is the scalar one
    return func.least(first, second)


def _largest(conn: Connection, old: Any, new: Any) -> Any:
    first, second = func.coalesce(old, literal_column("0")), func.coalesce(new, literal_column("0"))
    if conn.dialect.name == "sqlite":
        return func.max(first, second)
    return func.greatest(first, second)


def record_outcomes(engine: Engine, events: Sequence[Mapping[str, Any]]) -> int:
    """Fold webhook events (`provider_events` rows, duplicates welcome) into `mail_results`; returns
    how many mails they touched. Idempotent: each column keeps its earliest time."""
    with engine.begin() as conn:
        return fold_outcomes(conn, events)


def fold_outcomes(conn: Connection, events: Sequence[Mapping[str, Any]]) -> int:
    """`record_outcomes` inside the caller's transaction."""
    rows = outcomes_by_mail(events)
    if not rows:
        return 0
    c = mail_results.c
    statement = _upsert(conn)
    changes: dict[str, Any] = {
        name: _earliest(conn, c[name], _new(conn, statement, name)) for name in TIME_COLUMNS
    }
    changes["bounce"] = _largest(conn, c.bounce, _new(conn, statement, "bounce"))
    changes["customer_id"] = func.coalesce(c.customer_id, _new(conn, statement, "customer_id"))
    upsert = _on_conflict(conn, statement, changes)
    for start in range(0, len(rows), _CHUNK):
        conn.execute(upsert, rows[start : start + _CHUNK])
    return len(rows)


def mark_unsubscribed(engine: Engine, customer_id: int, campaign: str, at: datetime) -> bool:
    """An unsubscribe through a mail's link: the customer's latest mail of `campaign` queued before
    `at` gets `unsubscribed_at` (unless it had one). False when there is no such mail."""
    c = mail_results.c
    with engine.begin() as conn:
        key = conn.execute(
            select(c.message_key)
            .where(c.customer_id == customer_id, c.campaign == campaign, c.queued_at <= at)
            .order_by(c.queued_at.desc())
            .limit(1)
        ).scalar()
        if key is None:
            return False
        conn.execute(
            update(mail_results)
            .where(c.message_key == key, c.unsubscribed_at.is_(None))
            .values(unsubscribed_at=at)
        )
    return True


def settle_sent(
    engine: Engine,
    campaign: str | None = None,
    since: datetime | None = None,
    run_ids: Sequence[str] = (),
) -> int:
    """Give mails not settled yet the ledger's time of `sent` and the run that sent it: the campaign's
    mails queued since `since`, or those queued by `run_ids` (mails not sent stay unsettled: not in
    the reports). Called after a send and before a report (cheap when nothing is left to settle);
    returns how many were settled."""
    c, led = mail_results.c, send_ledger.c
    where = [c.sent_at.is_(None)]
    if campaign is not None:
        where += [c.campaign == campaign, c.queued_at >= since] if since else [c.campaign == campaign]
    if run_ids:
        where.append(c.run_id.in_(sorted(set(run_ids))))
    with engine.begin() as conn:
        if conn.dialect.name in ("sqlite", "postgresql"):  # UPDATE ... FROM: one join, not a lookup a row
            joined = update(mail_results).where(
                *where, led.message_key == c.message_key, led.status == "sent"
            )
            return conn.execute(joined.values(sent_at=led.updated_at, run_id=led.run_id)).rowcount
        sent = select(led.updated_at).where(led.message_key == c.message_key, led.status == "sent")
        run = select(led.run_id).where(led.message_key == c.message_key, led.status == "sent")
        values = {"sent_at": sent.scalar_subquery(), "run_id": run.scalar_subquery()}
        return conn.execute(update(mail_results).where(*where, sent.exists()).values(**values)).rowcount


COPY_ABOVE = 5_000  # PostgreSQL: more rows than this go through COPY (a few times faster than INSERTs)


def record_mails(engine: Engine, mails: Sequence[Mapping[str, Any]], now: datetime | None = None) -> int:
    """Record who and what of mails about to be sent (`message_key` + `FACT_COLUMNS`; missing ones are
    NULL). A mail recorded before (a rerun) gets the new values: only unsent mails are sent again."""
    if not mails:
        return 0
    now = now or utcnow()
    # only the facts: a mail queued again was not sent (the eligible never hold a sent mail), so its
    # outcome columns are still empty
    rows = [
        {"message_key": m["message_key"], **{k: m.get(k) for k in FACT_COLUMNS}, "queued_at": now}
        for m in sorted(mails, key=lambda m: m["message_key"])
    ]
    names = (*FACT_COLUMNS, "queued_at")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql" and len(rows) > COPY_ABOVE:
            _copy_upsert(conn, rows, ("message_key", *names))
            return len(rows)
        statement = _upsert(conn)
        upsert = _on_conflict(conn, statement, {n: _new(conn, statement, n) for n in names})
        for start in range(0, len(rows), _CHUNK):
            conn.execute(upsert, rows[start : start + _CHUNK])
    return len(rows)


def _copy_upsert(conn: Connection, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """PostgreSQL bulk upsert: COPY into a temporary table, then one INSERT ... ON CONFLICT from it."""
    listed = ", ".join(columns)
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE mail_facts_in ON COMMIT DROP AS SELECT "
        f"{listed} FROM mail_results WITH NO DATA"
    )
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY mail_facts_in ({listed}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(tuple(row[c] for c in columns))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "message_key")
    conn.exec_driver_sql(
        f"INSERT INTO mail_results ({listed}) SELECT {listed} FROM mail_facts_in ORDER BY message_key "
        f"ON CONFLICT (message_key) DO UPDATE SET {updates}"
    )


def plain_insert(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `mail_results` rows as they are (benchmarks, tests)."""
    with engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(insert(mail_results), list(rows[start : start + 10_000]))
