"""The send ledger: one row per (campaign, occasion key, customer), written before the provider call.

States: pending -> sent | rejected (final) or failed (retried by the next run); `holdout` (final,
written by `record_holdout` on real runs): the customer is in the campaign's random holdout group
and gets no mail for this occasion, ever (`shopmail report` compares them with the mailed). A pending
row left by a crash is resent on the next run under the same `message_key`, which the
providers use to stay idempotent (outbox file name, SendGrid `custom_args`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, bindparam, func, insert, select, update

from shopmail.mailer.base import SendResult
from shopmail.state.schema import send_ledger
from shopmail.state.state_db import present_values, utcnow

FINAL_STATES = frozenset({"sent", "rejected", "holdout"})
_CHUNK = 2000


def message_key(campaign: str, occasion_key: str, customer_id: int) -> str:
    """Deterministic id of one mail occasion (no personal data in it)."""
    return hashlib.sha256(f"{campaign}|{occasion_key}|{int(customer_id)}".encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    campaign: str
    occasion_key: str
    customer_id: int

    @property
    def key(self) -> str:
        return message_key(self.campaign, self.occasion_key, self.customer_id)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def statuses(engine: Engine, keys: Sequence[str]) -> dict[str, str]:
    """Current ledger state of each known message key."""
    found: dict[str, str] = {}
    with engine.connect() as conn:
        for chunk in _chunks(list(keys)):
            rows = conn.execute(
                select(send_ledger.c.message_key, send_ledger.c.status).where(
                    send_ledger.c.message_key.in_(chunk)
                )
            )
            found.update({k: s for k, s in rows})
    return found


def already_done(engine: Engine, keys: Sequence[str], campaign: str | None = None) -> set[str]:
    """Keys whose mail was sent, permanently rejected or held out: never send them again."""
    where = [send_ledger.c.status.in_(sorted(FINAL_STATES))]
    if campaign is not None:
        where.append(send_ledger.c.campaign == campaign)
    return present_values(engine, send_ledger.c.message_key, keys, *where)


@dataclass(frozen=True, slots=True)
class Claim:
    """Keys a run may send: `fresh` ones never tried, `in_doubt` ones an earlier attempt left
    pending or failed (the provider may have accepted them: ask it before resending)."""

    fresh: list[str]
    in_doubt: list[str]

    @property
    def keys(self) -> list[str]:
        return self.fresh + self.in_doubt


def _new_row(
    entry: LedgerEntry, status: str, run_id: str, provider: str | None, attempts: int, now: datetime
) -> dict[str, Any]:
    """A new ledger row for `entry`."""
    return {
        "campaign": entry.campaign,
        "occasion_key": entry.occasion_key,
        "customer_id": int(entry.customer_id),
        "message_key": entry.key,
        "status": status,
        "run_id": run_id,
        "provider": provider,
        "attempts": attempts,
        "created_at": now,
        "updated_at": now,
    }


def claim(engine: Engine, entries: Sequence[LedgerEntry], run_id: str, provider: str) -> Claim:
    """Write `pending` rows before sending; sent/rejected entries are left alone."""
    by_key = {e.key: e for e in entries}
    existing = statuses(engine, list(by_key))
    now = utcnow()
    new_rows = [
        _new_row(e, "pending", run_id, provider, 1, now) for key, e in by_key.items() if key not in existing
    ]
    resumed = [k for k in by_key if k in existing and existing[k] not in FINAL_STATES]
    with engine.begin() as conn:
        if new_rows:
            conn.execute(insert(send_ledger), new_rows)
        if resumed:
            conn.execute(
                update(send_ledger)
                .where(send_ledger.c.message_key == bindparam("k"))
                .values(
                    status="pending",
                    run_id=run_id,
                    provider=provider,
                    attempts=send_ledger.c.attempts + 1,
                    updated_at=now,
                ),
                [{"k": k} for k in resumed],
            )
    return Claim([r["message_key"] for r in new_rows], resumed)


def mark(engine: Engine, results: Sequence[SendResult]) -> None:
    """Record provider outcomes (sent / rejected / failed) for claimed keys."""
    if not results:
        return
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(send_ledger)
            .where(send_ledger.c.message_key == bindparam("k"))
            .values(
                status=bindparam("s"),
                provider_message_id=bindparam("pid"),
                error=bindparam("err"),
                updated_at=now,
            ),
            [
                {"k": r.message_key, "s": str(r.status), "pid": r.provider_message_id, "err": r.error}
                for r in results
            ],
        )


def record_holdout(engine: Engine, entries: Sequence[LedgerEntry], run_id: str) -> int:
    """Write `holdout` rows for customers held out of this occasion; idempotent (keys the ledger
    already knows, whatever their state, are left alone). Returns how many rows were written."""
    by_key = {e.key: e for e in entries}
    known = set(statuses(engine, list(by_key)))
    now = utcnow()
    rows = [_new_row(e, "holdout", run_id, None, 0, now) for key, e in by_key.items() if key not in known]
    if rows:
        with engine.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                conn.execute(insert(send_ledger), rows[start : start + _CHUNK])
    return len(rows)


CLAIMED_STATES = ("pending", "sent")  # mails going or gone out: what the frequency cap counts


def recent_mails(
    engine: Engine, customer_ids: Iterable[int], campaigns: Iterable[str], since: datetime
) -> pd.DataFrame:
    """Claimed (pending or sent) ledger rows of `campaigns` created at or after `since` (naive UTC)
    for the customers: customer_id, campaign, message_key, created_at (for `segments.arbitration`).

    Up to 2,000 customers: one `customer_id IN (...)` query; more: one scan of the window's rows,
    filtered in pandas (700k customers over a 1M-row ledger: about a second on SQLite)."""
    columns = ["customer_id", "campaign", "message_key", "created_at"]
    wanted = {int(c) for c in customer_ids}
    names = sorted(set(campaigns))
    if not wanted or not names:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, _HISTORY_DTYPES, strict=True)})
    query = select(*(send_ledger.c[c] for c in columns)).where(
        send_ledger.c.status.in_(CLAIMED_STATES),
        send_ledger.c.campaign.in_(names),
        send_ledger.c.created_at >= since,
    )
    if len(wanted) <= _CHUNK:
        query = query.where(send_ledger.c.customer_id.in_(sorted(wanted)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    # by column: building a frame from Row objects is ~10x slower
    values = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in columns]
    frame = pd.DataFrame(dict(zip(columns, values, strict=True)), columns=columns)
    if len(wanted) > _CHUNK:
        frame = frame[frame["customer_id"].isin(list(wanted))].reset_index(drop=True)
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    return frame.astype({"customer_id": "int64"})


_HISTORY_DTYPES = ("int64", object, object, "datetime64[us]")


def counts_by_status(engine: Engine, campaign: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.status, func.count())
            .where(send_ledger.c.campaign == campaign)
            .group_by(send_ledger.c.status)
        )
        return {s: n for s, n in rows}
