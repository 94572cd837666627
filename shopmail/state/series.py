"""Series entries in the state DB (table `series_entries`) and the series' step outcomes in the ledger.

An entry is written once per occasion (`campaign` + `entry_key`, insert-if-absent); a step's mail is
an ordinary ledger row (`<entry_key>:step<n>`: claimed, sent and fenced by `shopmail.state.ledger`,
exactly once); a step skipped for lateness or an unmet condition is an `expired` ledger row carrying
the reason in words, so no later run sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, func, select, update

from shopmail.state import ledger
from shopmail.state.schema import provider_events, send_ledger, series_entries
from shopmail.state.state_db import utcnow

ENTRY_COLUMNS = ["entry_key", "customer_id", "entered_at", "holdout", "data", "exit_reason"]


def open_entries(engine: Engine, campaign: str, since: datetime) -> pd.DataFrame:
    """The campaign's entries since `since` that have not exited (columns: ENTRY_COLUMNS)."""
    c = series_entries.c
    query = select(c.entry_key, c.customer_id, c.entered_at, c.holdout, c.data, c.exit_reason).where(
        c.campaign == campaign, c.exited_at.is_(None), c.entered_at >= since
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.order_by(c.id))]
    return pd.DataFrame(rows, columns=ENTRY_COLUMNS)


def known_entry_keys(engine: Engine, campaign: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` already entered the campaign's series (whatever became of them)."""
    c = series_entries.c
    found: set[str] = set()
    with engine.connect() as conn:
        for chunk in ledger._chunks(sorted(set(keys))):
            found.update(
                conn.execute(
                    select(c.entry_key).where(c.campaign == campaign, c.entry_key.in_(chunk))
                ).scalars()
            )
    return found


def latest_other_entries(
    engine: Engine, campaign: str, customer_ids: Sequence[int], since: datetime
) -> dict[int, datetime]:
    """Customer -> the latest moment they entered another series (since `since`)."""
    c = series_entries.c
    out: dict[int, datetime] = {}
    wanted = sorted({int(i) for i in customer_ids})
    with engine.connect() as conn:
        for start in range(0, len(wanted), 900):
            query = (
                select(c.customer_id, func.max(c.entered_at))
                .where(
                    c.campaign != campaign,
                    c.customer_id.in_(wanted[start : start + 900]),
                    c.entered_at >= since,
                )
                .group_by(c.customer_id)
            )
            out.update({int(cid): at for cid, at in conn.execute(query)})
    return out


def latest_clicks(
    engine: Engine, campaign: str, customer_ids: Sequence[int], since: datetime
) -> dict[int, datetime]:
    """Customer -> their latest click on a mail of `campaign` since `since` (webhook events)."""
    e = provider_events.c
    out: dict[int, datetime] = {}
    wanted = sorted({int(i) for i in customer_ids})
    with engine.connect() as conn:
        for start in range(0, len(wanted), 900):
            query = (
                select(e.customer_id, func.max(e.occurred_at))
                .where(
                    e.event == "click",
                    e.campaign == campaign,
                    e.customer_id.in_(wanted[start : start + 900]),
                    e.occurred_at >= since,
                )
                .group_by(e.customer_id)
            )
            out.update({int(cid): at for cid, at in conn.execute(query)})
    return out


def add_entries(engine: Engine, campaign: str, rows: list[dict[str, Any]], run_id: str) -> int:
    """Write new entries (entry_key, customer_id, entered_at, holdout, data); an entry already
    there is left alone (one entry per occasion, even for two runs at once). Returns rows written."""
    if not rows:
        return 0
    now = utcnow()
    values = [{**row, "campaign": campaign, "run_id": run_id, "created_at": now} for row in rows]
    written = 0
    with engine.begin() as conn:
        for start in range(0, len(values), 500):
            result = conn.execute(
                ledger.insert_if_absent(conn.dialect, series_entries), values[start : start + 500]
            )
            written += max(result.rowcount, 0)
    return written


def mark_exits(engine: Engine, campaign: str, reasons: dict[str, str], now: datetime | None = None) -> int:
    """Entries (key -> reason) leave the series: no further step. Idempotent: the first reason stays."""
    now = now or utcnow()
    c = series_entries.c
    changed = 0
    with engine.begin() as conn:
        for key, reason in sorted(reasons.items()):
            result = conn.execute(
                update(series_entries)
                .where(and_(c.campaign == campaign, c.entry_key == key, c.exited_at.is_(None)))
                .values(exited_at=now, exit_reason=reason)
            )
            changed += max(result.rowcount, 0)
    return changed


def record_skips(engine: Engine, skips: list[tuple[ledger.LedgerEntry, str]], run_id: str) -> int:
    """Steps that will never be sent (too late, a condition): `expired` ledger rows with the reason in
    words; a step the ledger already knows (any state) is left alone. Returns rows written."""
    known = set(ledger.statuses(engine, [entry.key for entry, _ in skips]))
    now = utcnow()
    rows = [
        {**ledger._new_row(entry, "expired", run_id, None, 0, now), "error": reason}
        for entry, reason in skips
        if entry.key not in known
    ]
    written = 0
    if rows:
        with engine.begin() as conn:
            for start in range(0, len(rows), 500):
                result = conn.execute(
                    ledger.insert_if_absent(conn.dialect, send_ledger), rows[start : start + 500]
                )
                written += max(result.rowcount, 0)
    return written


def step_outcomes(engine: Engine, keys: Sequence[str]) -> dict[str, tuple[str, datetime]]:
    """Message key -> (ledger status, last change) of the series' step mails the ledger knows."""
    c = send_ledger.c
    out: dict[str, tuple[str, datetime]] = {}
    with engine.connect() as conn:
        for chunk in ledger._chunks(sorted(set(keys))):
            for key, status, at in conn.execute(
                select(c.message_key, c.status, c.updated_at).where(c.message_key.in_(chunk))
            ):
                out[key] = (status, at)
    return out


def all_entries(engine: Engine, campaign: str) -> pd.DataFrame:
    """Every entry of the campaign's series (for the funnel): ENTRY_COLUMNS + exited_at."""
    c = series_entries.c
    query = select(
        c.entry_key, c.customer_id, c.entered_at, c.holdout, c.data, c.exit_reason, c.exited_at
    ).where(c.campaign == campaign)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.order_by(c.id))]
    return pd.DataFrame(rows, columns=[*ENTRY_COLUMNS, "exited_at"])


def step_rows(engine: Engine, campaign: str) -> pd.DataFrame:
    """The campaign's step mails in the ledger: occasion_key, customer_id, status, error, updated_at."""
    c = send_ledger.c
    query = select(c.occasion_key, c.customer_id, c.status, c.error, c.updated_at).where(
        c.campaign == campaign, c.occasion_key.like("%:step%")
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    return pd.DataFrame(rows, columns=["occasion_key", "customer_id", "status", "error", "updated_at"])
