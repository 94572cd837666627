"""The send ledger: one row per (campaign, occasion key, customer), written before the provider call.

States: pending -> sent | rejected (final), failed (definitely not accepted: retried by the next run)
or in_doubt (the request may have reached the provider and no answer came: never retried blindly;
see `claim` and `confirm_sent`); `holdout` (final,
written by `record_holdout` on real runs): the customer is in the campaign's random holdout group
and gets no mail for this occasion, ever (`shopmail report` compares them with the mailed);
`expired` (final, service poller): a service mail never sent before its `max_age_hours`.

Claims are atomic (`claim`): insert-if-absent for new keys, compare-and-set for existing rows. A
`pending` row belongs to its run while its lease (`lease_until`, renewed by `Heartbeat`) runs; only
when it expired (the run died) may another run take it over, as in doubt. Doubtful rows (`in_doubt`,
or a dead run's `pending`) wait for proof of acceptance (webhook events in `provider_events`, the
provider's own lookup) and are taken over for one resend only after a grace period without proof.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Connection, Dialect, Engine, Insert, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from shopmail.mailer.base import SendResult
from shopmail.redaction import redact
from shopmail.state.schema import customer_locks, provider_events, send_ledger
from shopmail.state.state_db import present_values, utcnow

FINAL_STATES = frozenset({"sent", "rejected", "holdout", "expired"})
IN_DOUBT = "in_doubt"
# webhook events that prove SendGrid accepted the mail (it processed, delivered, deferred, bounced or
# dropped it: each happens only after acceptance)
PROOF_EVENTS = ("processed", "delivered", "deferred", "bounce", "dropped")
DEFAULT_LEASE_S = 300.0  # SHOPMAIL_CLAIM_LEASE_SECONDS
_CHUNK = 2000
T = TypeVar("T")


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
    """What one claim call won. `fresh`: keys never tried (this call inserted their row); `retry`:
    `failed` rows (definitely not accepted) or this run's own unsent `pending` rows, taken again;
    `in_doubt`: doubtful rows (`in_doubt`, or `pending` under a dead run) whose doubt is older than
    the grace period, taken over by this run (ask the provider for proof, then resend once).
    `awaiting`: doubtful rows still inside the grace period, or this run's own `in_doubt` rows: not
    taken (they wait for proof). `held_by_other`: `pending` under a live lease of another run (that
    run sends them: skip, reason `claimed_by_other_run`); `capped`: over the frequency/daily cap at
    claim time (reason `frequency_cap`, no row written). `token` identifies this call's rows."""

    fresh: list[str]
    in_doubt: list[str]
    held_by_other: list[str] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)
    token: str = ""
    retry: list[str] = field(default_factory=list)
    awaiting: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return self.fresh + self.retry + self.in_doubt


@dataclass(frozen=True, slots=True)
class CapCheck:
    """A claim-time cap: `keep(candidates, history)` -> bool mask over the candidates (customer_id,
    message_key) given the claimed rows of `campaigns` created since `since` (see `recent_mails`)."""

    campaigns: tuple[str, ...]
    since: datetime
    keep: Callable[[pd.DataFrame, pd.DataFrame], pd.Series]


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


def insert_if_absent(dialect: Dialect, table: Table) -> Insert:
    """INSERT that silently skips rows whose unique key exists (SQLite / PostgreSQL / MariaDB)."""
    if dialect.name == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    if dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    if dialect.name in ("mysql", "mariadb"):
        return insert(table).prefix_with("IGNORE")
    raise NotImplementedError(f"no insert-if-absent for {dialect.name}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds SQLite's write lock from its first statement (`BEGIN IMMEDIATE`), so
    what it reads cannot change before it writes; an ordinary transaction elsewhere."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name in ("mysql", "mariadb"):  # fewer gap locks; row locks still serialize
            conn.execution_options(isolation_level="READ COMMITTED")
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def _lock_customers(engine: Engine, conn: Connection, customer_ids: Sequence[int]) -> None:
    """Row-lock the customers (ascending: no deadlock between claimers) until `conn` commits; their
    lock rows are created first in a short transaction of their own. SQLite: the write transaction
    already serializes every claimer."""
    if conn.dialect.name == "sqlite" or not customer_ids:
        return
    ids = sorted(set(customer_ids))
    with engine.begin() as setup:
        for start in range(0, len(ids), _CHUNK):
            setup.execute(
                insert_if_absent(setup.dialect, customer_locks),
                [{"customer_id": c} for c in ids[start : start + _CHUNK]],
            )
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        conn.execute(
            select(customer_locks.c.customer_id)
            .where(customer_locks.c.customer_id.in_(chunk))
            .order_by(customer_locks.c.customer_id)
            .with_for_update()
        ).all()


def _take(
    conn: Connection,
    entries: Sequence[LedgerEntry],
    run_id: str,
    provider: str,
    token: str,
    now: datetime,
    lease_until: datetime,
    doubt_before: datetime,
) -> None:
    """Compare-and-set the takeable existing rows, then insert the absent ones: one statement per
    chunk, each atomic; won rows carry `token:f` (failed or own pending: retried), `token:d` (doubt
    taken over) or `token:n` (new). Rows are written in key order, so concurrent claimers lock them in
    the same order (no deadlock). Doubtful rows are taken only when their doubt began before
    `doubt_before` (the grace period), and never a run's own `in_doubt` rows."""
    entries = sorted(entries, key=lambda e: e.key)
    keys = [e.key for e in entries]
    c = send_ledger.c
    retry = (c.status == "failed") | ((c.status == "pending") & (c.run_id == run_id))
    dead_pending = (c.status == "pending") & (c.run_id != run_id) & c.lease_until.is_(None)
    dead_pending |= (c.status == "pending") & (c.run_id != run_id) & (c.lease_until < now)
    doubt_due = (dead_pending & (func.coalesce(c.lease_until, c.updated_at) <= doubt_before)) | (
        (c.status == IN_DOUBT) & (c.run_id != run_id) & (c.doubt_since <= doubt_before)
    )
    for condition, mark_ in ((retry, "f"), (doubt_due, "d")):
        for chunk in _chunks(keys):
            conn.execute(
                update(send_ledger)
                .where(c.message_key.in_(chunk), condition)
                .values(
                    status="pending",
                    run_id=run_id,
                    provider=provider,
                    attempts=c.attempts + 1,
                    updated_at=now,
                    lease_until=lease_until,
                    claim_token=f"{token}:{mark_}",
                )
            )
    rows = [
        {
            **_new_row(e, "pending", run_id, provider, 1, now),
            "lease_until": lease_until,
            "claim_token": f"{token}:n",
        }
        for e in entries
    ]
    for start in range(0, len(rows), _CHUNK):
        conn.execute(insert_if_absent(conn.dialect, send_ledger), rows[start : start + _CHUNK])


def _states(conn: Connection, keys: Sequence[str]) -> dict[str, tuple[str, str | None, datetime | None]]:
    """message_key -> (status, claim_token, lease_until)."""
    found: dict[str, tuple[str, str | None, datetime | None]] = {}
    c = send_ledger.c
    for chunk in _chunks(list(keys)):
        rows = conn.execute(
            select(c.message_key, c.status, c.claim_token, c.lease_until).where(c.message_key.in_(chunk))
        )
        found.update({k: (s, t, lease) for k, s, t, lease in rows})
    return found


_DEADLOCK_MARKERS = ("deadlock", "lock wait timeout", "database is locked", "could not serialize")


def retry_on_deadlock(action: Callable[[], T], attempts: int = 12) -> T:
    """Run a whole transaction again when the DB chose it as a deadlock victim (it was rolled back:
    nothing of it happened). InnoDB may pick one even between claimers locking in the same order."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except OperationalError as exc:
            if attempt == attempts or not any(m in str(exc.orig).lower() for m in _DEADLOCK_MARKERS):
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def claim(
    engine: Engine,
    entries: Sequence[LedgerEntry],
    run_id: str,
    provider: str,
    *,
    lease_seconds: float = DEFAULT_LEASE_S,
    cap: CapCheck | None = None,
    now: datetime | None = None,
    doubt_grace_s: float = 0.0,
) -> Claim:
    """Atomically claim `entries` for `run_id` (rows `pending`, leased until now + `lease_seconds`).

    New keys: insert-if-absent on the unique `message_key`. Existing keys: compare-and-set, taken
    when `failed` or `pending` under this run (`Claim.retry`), or when in doubt (`in_doubt` of another
    run, `pending` under an expired lease) for longer than `doubt_grace_s` (`Claim.in_doubt`; the
    doubt of a dead run's row starts when its lease ran out). `sent`, `rejected`, `holdout` and
    `expired` rows are never touched; a live run's `pending` row neither. With `cap` (marketing
    mails), the customers are locked, the cap is re-checked against the claimed rows committed so far
    and the entries over it are not claimed (`Claim.capped`).
    """
    by_key = {e.key: e for e in entries}
    return retry_on_deadlock(
        lambda: _claim_once(
            engine, by_key, run_id, provider, lease_seconds, cap, now or utcnow(), doubt_grace_s
        )
    )


def _claim_once(
    engine: Engine,
    by_key: dict[str, LedgerEntry],
    run_id: str,
    provider: str,
    lease_seconds: float,
    cap: CapCheck | None,
    now: datetime,
    doubt_grace_s: float = 0.0,
) -> Claim:
    token = uuid.uuid4().hex
    lease_until = now + timedelta(seconds=lease_seconds)
    capped: list[str] = []
    with write_transaction(engine) as conn:
        wanted = list(by_key.values())
        if cap is not None and wanted:
            _lock_customers(engine, conn, [e.customer_id for e in wanted])
            known = {k: status for k, (status, _, _) in _states(conn, list(by_key)).items()}
            wanted = [e for e in wanted if known.get(e.key) not in FINAL_STATES]
            # a `pending`/`in_doubt` row already holds its slot (it counts for every other claim)
            holding = [e for e in wanted if known.get(e.key) in ("pending", IN_DOUBT)]
            wanted = [e for e in wanted if known.get(e.key) not in ("pending", IN_DOUBT)]
            candidates = pd.DataFrame(
                {
                    "customer_id": pd.Series([int(e.customer_id) for e in wanted], dtype="int64"),
                    "message_key": pd.Series([e.key for e in wanted], dtype=object),
                }
            )
            history = _recent_rows(conn, candidates["customer_id"].tolist(), cap.campaigns, cap.since)
            keep = cap.keep(candidates, history).to_numpy(dtype=bool) if len(candidates) else []
            capped = [e.key for e, ok in zip(wanted, keep, strict=True) if not ok]
            wanted = holding + [e for e, ok in zip(wanted, keep, strict=True) if ok]
        if wanted:
            doubt_before = now - timedelta(seconds=doubt_grace_s)
            _take(conn, wanted, run_id, provider, token, now, lease_until, doubt_before)
        found = _states(conn, list(by_key))
    fresh, retry, in_doubt, awaiting, held = [], [], [], [], []
    skip = set(capped)
    for key in by_key:
        status, owner, lease = found.get(key, ("", None, None))
        if owner == f"{token}:n":
            fresh.append(key)
        elif owner == f"{token}:f":
            retry.append(key)
        elif owner == f"{token}:d":
            in_doubt.append(key)
        elif key in skip or status in FINAL_STATES:
            continue
        elif status == IN_DOUBT or (status == "pending" and (lease is None or lease < now)):
            awaiting.append(key)
        else:
            held.append(key)
    return Claim(fresh, in_doubt, held, capped, token, retry, awaiting)


def renew_lease(engine: Engine, run_id: str, token: str, lease_seconds: float) -> int:
    """Extend the lease of the rows a claim call won that are still `pending`; returns how many."""
    if not token:
        return 0
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(
            update(send_ledger)
            .where(
                send_ledger.c.claim_token.in_([f"{token}:n", f"{token}:f", f"{token}:d"]),
                send_ledger.c.run_id == run_id,
                send_ledger.c.status == "pending",
            )
            .values(lease_until=now + timedelta(seconds=lease_seconds))
        ).rowcount


class Heartbeat:
    """Renews a claim's lease every third of the lease while the run sends (a background thread);
    a renewal that fails is retried at the next beat. Use as a context manager."""

    def __init__(self, engine: Engine, run_id: str, token: str, lease_seconds: float) -> None:
        self.engine, self.run_id, self.token, self.lease_seconds = engine, run_id, token, lease_seconds
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-heartbeat", daemon=True)

    def beat(self) -> None:
        """Renew now (also called between request groups)."""
        renew_lease(self.engine, self.run_id, self.token, self.lease_seconds)
        self.beats += 1

    def _run(self) -> None:
        while not self._stop.wait(max(0.5, self.lease_seconds / 3)):
            with contextlib.suppress(Exception):
                self.beat()

    def __enter__(self) -> Heartbeat:
        if self.token:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _error(error: str | None) -> str | None:
    """A provider or issuing error as stored: redacted (no coupon code, token or secret)."""
    return redact(error) if error else error


def mark(engine: Engine, results: Sequence[SendResult], run_id: str | None = None) -> None:
    """Record provider outcomes (sent / rejected / failed / in_doubt) for claimed keys; with `run_id`,
    only rows that run still owns (and that no proof marked `sent` meanwhile) are updated. The lease
    ends with the row's `pending` state; an `in_doubt` outcome starts the doubt (`doubt_since`)."""
    if not results:
        return
    now = utcnow()
    query = update(send_ledger).where(send_ledger.c.message_key == bindparam("k"))
    if run_id is not None:
        query = query.where(send_ledger.c.run_id == run_id, send_ledger.c.status != "sent")
    with engine.begin() as conn:
        conn.execute(
            query.values(
                status=bindparam("s"),
                provider_message_id=bindparam("pid"),
                error=bindparam("err"),
                updated_at=now,
                lease_until=None,
                doubt_since=bindparam("ds"),
            ),
            [
                {
                    "k": r.message_key,
                    "s": str(r.status),
                    "pid": r.provider_message_id,
                    "err": _error(r.error),
                    "ds": now if str(r.status) == IN_DOUBT else None,
                }
                for r in results
            ],
        )


def _doubtful(now: datetime) -> Any:
    """Rows in doubt: `in_doubt`, or `pending` under an expired lease (its run died mid-send)."""
    c = send_ledger.c
    return (c.status == IN_DOUBT) | (
        (c.status == "pending") & (c.lease_until.is_(None) | (c.lease_until < now))
    )


def proved_by_events(engine: Engine, keys: Sequence[str]) -> dict[str, str | None]:
    """Of `keys`, those a stored webhook event proves accepted (`PROOF_EVENTS` carrying the key in
    its custom_args), with the provider's message id when the event had one."""
    found: dict[str, str | None] = {}
    c = provider_events.c
    with engine.connect() as conn:
        for chunk in _chunks(sorted(set(keys))):
            rows = conn.execute(
                select(c.message_key, c.sg_message_id).where(
                    c.message_key.in_(chunk), c.event.in_(PROOF_EVENTS)
                )
            )
            for key, message_id in rows:
                if found.get(key) is None:
                    found[key] = message_id
    return found


def confirm_sent(engine: Engine, proofs: dict[str, str | None], now: datetime | None = None) -> int:
    """Mark doubtful rows (`in_doubt`, or `pending` under an expired lease) `sent` on proof of
    acceptance (key -> provider message id or None); rows in any other state are left alone (a live
    run's pending row is its run's to mark). Returns how many rows changed."""
    if not proofs:
        return 0
    now = now or utcnow()
    c = send_ledger.c
    changed = 0
    with engine.begin() as conn:
        for key, message_id in sorted(proofs.items()):
            values: dict[str, Any] = {"status": "sent", "updated_at": now, "lease_until": None}
            values |= {"doubt_since": None, "error": None}
            if message_id:
                values["provider_message_id"] = message_id[:128]
            changed += conn.execute(
                update(send_ledger).where(c.message_key == key, _doubtful(now)).values(**values)
            ).rowcount
    return changed


def expire(engine: Engine, entries: Sequence[LedgerEntry], run_id: str, now: datetime | None = None) -> int:
    """Close mails that were never sent and are now too old to send (service poller): their rows become
    `expired` (final), a row is written for those never claimed. `failed` rows and `pending` rows of a
    dead run (expired lease) are closed; sent/rejected ones and a live run's are left alone. Returns
    how many mails were closed by this call."""
    by_key = {e.key: e for e in entries}
    if not by_key:
        return 0
    now = now or utcnow()
    token = uuid.uuid4().hex
    c = send_ledger.c
    closable = (c.status == "failed") | (
        (c.status == "pending") & (c.lease_until.is_(None) | (c.lease_until < now))
    )

    def once() -> int:
        with write_transaction(engine) as conn:
            for chunk in _chunks(sorted(by_key)):
                conn.execute(
                    update(send_ledger)
                    .where(c.message_key.in_(chunk), closable)
                    .values(
                        status="expired", run_id=run_id, updated_at=now, lease_until=None, claim_token=token
                    )
                )
            rows = [
                {**_new_row(by_key[k], "expired", run_id, None, 0, now), "claim_token": token}
                for k in sorted(by_key)
            ]
            for start in range(0, len(rows), _CHUNK):
                conn.execute(insert_if_absent(conn.dialect, send_ledger), rows[start : start + _CHUNK])
            return sum(1 for _, owner, _ in _states(conn, list(by_key)).values() if owner == token)

    return retry_on_deadlock(once)


def record_holdout(engine: Engine, entries: Sequence[LedgerEntry], run_id: str) -> int:
    """Write `holdout` rows for customers held out of this occasion; idempotent (keys the ledger
    already knows, whatever their state, are left alone). Returns how many rows were written."""
    by_key = {e.key: e for e in entries}
    known = set(statuses(engine, list(by_key)))
    now = utcnow()
    rows = [_new_row(e, "holdout", run_id, None, 0, now) for key, e in by_key.items() if key not in known]
    written = 0
    if rows:
        with engine.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                result = conn.execute(
                    insert_if_absent(conn.dialect, send_ledger), rows[start : start + _CHUNK]
                )
                written += max(result.rowcount, 0)
    return written


CLAIMED_STATES = ("pending", "sent", IN_DOUBT)  # mails going or gone out: what the frequency cap counts


def recent_mails(
    engine: Engine, customer_ids: Iterable[int], campaigns: Iterable[str], since: datetime
) -> pd.DataFrame:
    """Claimed (pending or sent) ledger rows of `campaigns` created at or after `since` (naive UTC)
    for the customers: customer_id, campaign, message_key, created_at (for `segments.arbitration`).

    Up to 2,000 customers: one `customer_id IN (...)` query; more: one scan of the window's rows,
    filtered in pandas (700k customers over a 1M-row ledger: about a second on SQLite)."""
    with engine.connect() as conn:
        return _recent_rows(conn, customer_ids, campaigns, since)


def _recent_rows(
    conn: Connection, customer_ids: Iterable[int], campaigns: Iterable[str], since: datetime
) -> pd.DataFrame:
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
    rows = conn.execute(query).all()
    # by column: building a frame from Row objects is ~10x slower
    values = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in columns]
    frame = pd.DataFrame(dict(zip(columns, values, strict=True)), columns=columns)
    if len(wanted) > _CHUNK:
        frame = frame[frame["customer_id"].isin(list(wanted))].reset_index(drop=True)
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    return frame.astype({"customer_id": "int64"})


_HISTORY_DTYPES = ("int64", object, object, "datetime64[us]")


def in_doubt_counts(engine: Engine, campaign: str | None = None) -> dict[str, int]:
    """Per campaign: ledger rows `in_doubt` (waiting for proof of acceptance)."""
    query = (
        select(send_ledger.c.campaign, func.count())
        .where(send_ledger.c.status == IN_DOUBT)
        .group_by(send_ledger.c.campaign)
    )
    if campaign is not None:
        query = query.where(send_ledger.c.campaign == campaign)
    with engine.connect() as conn:
        return {name: int(n) for name, n in conn.execute(query)}


def counts_by_status(engine: Engine, campaign: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.status, func.count())
            .where(send_ledger.c.campaign == campaign)
            .group_by(send_ledger.c.status)
        )
        return {s: n for s, n in rows}
