"""The send ledger: one row per (campaign, occasion key, customer), written before the provider call.

States: pending -> sent | rejected (final) or failed (retried by the next run). A pending
row left by a crash is resent on the next run under the same `message_key`, which the
providers use to stay idempotent (outbox file name, SendGrid `custom_args`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, func, insert, select, update

from shopmail.state_db import present_values, utcnow
from shopmail.state_schema import send_ledger
from tasks.mailer.base import SendResult

FINAL_STATES = frozenset({"sent", "rejected"})
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
    """Keys whose mail was sent (or permanently rejected): never send them again."""
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


def claim(engine: Engine, entries: Sequence[LedgerEntry], run_id: str, provider: str) -> Claim:
    """Write `pending` rows before sending; sent/rejected entries are left alone."""
    by_key = {e.key: e for e in entries}
    existing = statuses(engine, list(by_key))
    now = utcnow()
    new_rows = [
        {
            "campaign": e.campaign,
            "occasion_key": e.occasion_key,
            "customer_id": int(e.customer_id),
            "message_key": key,
            "status": "pending",
            "run_id": run_id,
            "provider": provider,
            "attempts": 1,
            "created_at": now,
            "updated_at": now,
        }
        for key, e in by_key.items()
        if key not in existing
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


def counts_by_status(engine: Engine, campaign: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.status, func.count())
            .where(send_ledger.c.campaign == campaign)
            .group_by(send_ledger.c.status)
        )
        return {s: n for s, n in rows}
