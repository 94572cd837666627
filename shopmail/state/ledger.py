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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ARRAY,
    Connection,
    Dialect,
    Engine,
    Insert,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from shopmail.mailer.base import SendResult
from shopmail.redaction import redact
from shopmail.state.schema import customer_locks, provider_events, send_ledger
from shopmail.state.state_db import present_values, utcnow

if TYPE_CHECKING:  # pandas is imported by the claim-time cap and the history reads only
    import pandas as pd

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
    """One mail occasion; `key` (its message key) is computed once, when the entry is made."""

    campaign: str
    occasion_key: str
    customer_id: int
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", message_key(self.campaign, self.occasion_key, self.customer_id))


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
    """What one claim call (one task attempt) won. `token` identifies the attempt: its rows carry
    `token:n` (`fresh`: never tried, inserted now), `token:f` (`retry`: `failed` rows, definitely not
    accepted, or a dead attempt's `pending` rows it never handed to the provider) or `token:d`
    (`in_doubt`: doubtful rows, `in_doubt` or a dead attempt's requested `pending` rows, whose doubt is
    older than the grace period: ask the provider for proof, then resend once).

    Not won: `awaiting` (doubtful rows still inside the grace period: they wait for proof);
    `held_by_other` (`pending` under the live lease of another attempt: skip, reason
    `claimed_by_other_run`), of which `held_by_own_run` belong to an earlier attempt of this same run
    (a re-executed task: that attempt died or is finishing; its lease ends at `held_until`);
    `capped` (over the frequency/daily cap at claim time: reason `frequency_cap`, no row written);
    `done_by_this_run` (final rows an earlier attempt of this run finished: not "already sent")."""

    fresh: list[str]
    in_doubt: list[str]
    held_by_other: list[str] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)
    token: str = ""
    retry: list[str] = field(default_factory=list)
    awaiting: list[str] = field(default_factory=list)
    held_by_own_run: list[str] = field(default_factory=list)
    done_by_this_run: list[str] = field(default_factory=list)
    held_until: datetime | None = None  # when the latest live lease over `held_by_other` ends
    held_runs: dict[str, int] = field(default_factory=dict)  # run id -> rows of `held_by_other` it holds

    @property
    def keys(self) -> list[str]:
        return self.fresh + self.retry + self.in_doubt

    @property
    def owned(self) -> tuple[str, str, str]:
        """The claim tokens of this attempt's rows."""
        return owned_tokens(self.token)


def owned_tokens(token: str) -> tuple[str, str, str]:
    """The `claim_token` values of the rows one attempt won (new, retried, doubt taken over)."""
    return (f"{token}:n", f"{token}:f", f"{token}:d")


def _owned_by(token: str) -> Any:
    """Rows one attempt won (three equalities: usable in an executemany, unlike an IN list)."""
    c = send_ledger.c.claim_token
    new, retried, doubted = owned_tokens(token)
    return (c == new) | (c == retried) | (c == doubted)


@dataclass(frozen=True, slots=True)
class CapCheck:
    """A claim-time cap: `keep(candidates, history)` -> one bool per candidate (customer_id,
    message_key), given the claimed rows (customer_id, campaign, message_key, created_at) of
    `campaigns` created since `since` (see `recent_mails`)."""

    campaigns: tuple[str, ...]
    since: datetime
    keep: Callable[[list[tuple[int, str]], list[tuple]], list[bool]]


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


SEPARATOR = "\x1f"  # ASCII unit separator: never in a key, an id or an occasion key


def joined(values: Iterable[Any]) -> str:
    """Values as one text parameter for PostgreSQL's `string_to_array(param, SEPARATOR)`: one string
    to bind instead of an array whose every element the driver escapes (about 90 µs per 1,000)."""
    return SEPARATOR.join(map(str, values))


def one_of(column: Any, values: Sequence[Any], dialect: Dialect) -> Any:
    """`column IN values` as one bound parameter where the backend allows it (PostgreSQL:
    `= ANY(string_to_array(text))`, no per-value compilation or escaping), an expanding IN elsewhere."""
    if dialect.name == "postgresql":
        array = func.string_to_array(literal(joined(values), String), literal(SEPARATOR, String))
        if isinstance(column.type, Integer):
            array = cast(array, ARRAY(Integer))
        return column == any_(array)
    return column.in_(list(values))


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


_PG_LOCK_ROWS = text(
    "INSERT INTO customer_locks (customer_id) SELECT DISTINCT CAST(unnest(string_to_array(:ids, :sep)) "
    "AS integer) ON CONFLICT DO NOTHING"
)


def _lock_customers(engine: Engine, conn: Connection, customer_ids: Sequence[int]) -> None:
    """Row-lock the customers (ascending: no deadlock between claimers) until `conn` commits; their
    lock rows are created first in a short transaction of their own (one statement). SQLite: the
    write transaction already serializes every claimer."""
    if conn.dialect.name == "sqlite" or not customer_ids:
        return
    ids = sorted(set(customer_ids))
    with engine.begin() as setup:
        if setup.dialect.name == "postgresql":
            # lock rows hold no state (made again if a crash loses them): no need to wait for the WAL flush
            setup.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            setup.execute(_PG_LOCK_ROWS, {"ids": joined(ids), "sep": SEPARATOR})
        else:
            for start in range(0, len(ids), _CHUNK):
                setup.execute(
                    insert_if_absent(setup.dialect, customer_locks),
                    [{"customer_id": c} for c in ids[start : start + _CHUNK]],
                )
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        conn.execute(
            select(customer_locks.c.customer_id)
            .where(one_of(customer_locks.c.customer_id, chunk, conn.dialect))
            .order_by(customer_locks.c.customer_id)
            .with_for_update()
        ).all()


_PG_INSERT = (
    "INSERT INTO send_ledger (campaign, occasion_key, customer_id, message_key, status, run_id, provider, "
    "attempts, created_at, updated_at, lease_until, claim_token) "
    "SELECT c, o, CAST(i AS integer), k, 'pending', :run_id, :provider, 1, :now, :now, :lease_until, "
    ":claim_token FROM unnest(string_to_array(:campaigns, :sep), string_to_array(:occasions, :sep), "
    "string_to_array(:ids, :sep), string_to_array(:keys, :sep)) AS t(c, o, i, k) "
    "ON CONFLICT DO NOTHING RETURNING message_key"
)


def _insert_absent(
    conn: Connection, entries: Sequence[LedgerEntry], values: dict[str, Any], returning: bool
) -> set[str]:
    """Insert `pending` rows (`values`: run_id, provider, now, lease_until, claim_token) for the
    entries whose key is absent, in one statement per chunk: PostgreSQL `INSERT ... SELECT FROM
    unnest(string_to_array(...)) ON CONFLICT DO NOTHING` (four text parameters); MariaDB a multi-row
    `INSERT IGNORE` (the driver joins the rows); SQLite `executemany` in this transaction. With
    `returning` (PostgreSQL, SQLite), the keys actually inserted (a concurrent claimer may have won
    some); else an empty set."""
    inserted: set[str] = set()
    for start in range(0, len(entries), _CHUNK):
        part = entries[start : start + _CHUNK]
        if conn.dialect.name == "postgresql":
            rows = conn.execute(
                text(_PG_INSERT),
                {
                    **values,
                    "sep": SEPARATOR,
                    "campaigns": joined(e.campaign for e in part),
                    "occasions": joined(e.occasion_key for e in part),
                    "ids": joined(int(e.customer_id) for e in part),
                    "keys": joined(e.key for e in part),
                },
            )
            inserted.update(k for (k,) in rows)
            continue
        now = values["now"]
        rows = [
            {
                **_new_row(e, "pending", values["run_id"], values["provider"], 1, now),
                "lease_until": values["lease_until"],
                "claim_token": values["claim_token"],
            }
            for e in part
        ]
        statement = insert_if_absent(conn.dialect, send_ledger)
        if returning:
            result = conn.execute(statement.returning(send_ledger.c.message_key), rows)
            inserted.update(k for (k,) in result)
        else:
            conn.execute(statement, rows)
    return inserted


_State = tuple[str, str | None, datetime | None, str | None]  # status, claim_token, lease_until, run_id


def _take(
    conn: Connection,
    entries: Sequence[LedgerEntry],
    known: dict[str, _State],
    run_id: str,
    provider: str,
    token: str,
    now: datetime,
    lease_until: datetime,
    doubt_before: datetime,
) -> dict[str, _State] | None:
    """Compare-and-set the takeable existing rows (one statement per chunk, only when `known` has
    any), then insert the absent ones; won rows carry `token:f` (failed, or a dead attempt's
    never-requested pending: retried), `token:d` (doubt taken over) or `token:n` (new). A `pending`
    row under a live lease is never taken, whichever attempt or run holds it. Doubtful rows are
    taken only when their doubt began before `doubt_before` (the grace period).

    Returns the rows won (key -> state), read back with RETURNING (PostgreSQL, SQLite), or None where
    the backend cannot (MariaDB: the caller reads the states)."""
    entries = sorted(entries, key=lambda e: e.key)
    returning = conn.dialect.name in ("postgresql", "sqlite")
    won: dict[str, _State] = {}
    c = send_ledger.c
    existing = [e.key for e in entries if e.key in known]
    if existing:
        dead = (c.status == "pending") & (c.lease_until.is_(None) | (c.lease_until < now))
        retry = (c.status == "failed") | (dead & c.requested_at.is_(None))
        doubt_start = func.coalesce(c.lease_until, c.updated_at)
        doubt_due = (dead & c.requested_at.is_not(None) & (doubt_start <= doubt_before)) | (
            (c.status == IN_DOUBT) & (c.doubt_since <= doubt_before)
        )
        for chunk in _chunks(existing):
            statement = (
                update(send_ledger)
                .where(one_of(c.message_key, chunk, conn.dialect), retry | doubt_due)
                # the token first: MariaDB evaluates assignments left to right, each seeing the ones
                # before
                .ordered_values(
                    (c.claim_token, case((retry, f"{token}:f"), else_=f"{token}:d")),
                    (c.status, "pending"),
                    (c.run_id, run_id),
                    (c.provider, provider),
                    (c.attempts, c.attempts + 1),
                    (c.updated_at, now),
                    (c.lease_until, lease_until),
                    (c.requested_at, None),
                )
            )
            if returning:
                rows = conn.execute(statement.returning(c.message_key, c.claim_token))
                won.update((k, ("pending", t, lease_until, run_id)) for k, t in rows)
            else:
                conn.execute(statement)
    absent = [e for e in entries if e.key not in known]
    values = {"run_id": run_id, "provider": provider, "now": now, "lease_until": lease_until}
    inserted = _insert_absent(conn, absent, {**values, "claim_token": f"{token}:n"}, returning)
    if not returning:
        return None
    won.update((k, ("pending", f"{token}:n", lease_until, run_id)) for k in inserted)
    return won


def _states(conn: Connection, keys: Sequence[str]) -> dict[str, _State]:
    """message_key -> (status, claim_token, lease_until, run_id)."""
    found: dict[str, _State] = {}
    c = send_ledger.c
    for chunk in _chunks(list(keys)):
        rows = conn.execute(
            select(c.message_key, c.status, c.claim_token, c.lease_until, c.run_id).where(
                one_of(c.message_key, chunk, conn.dialect)
            )
        )
        found.update({k: (s, t, lease, run) for k, s, t, lease, run in rows})
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
    """Atomically claim `entries` for one attempt of `run_id` (rows `pending`, leased until now +
    `lease_seconds`, owned by the attempt's token).

    New keys: insert-if-absent on the unique `message_key`. Existing keys: compare-and-set, taken
    when `failed`, or `pending` under an expired lease and never requested (`Claim.retry`), or when in
    doubt (`in_doubt`, or `pending` under an expired lease after its request) for longer than
    `doubt_grace_s` (`Claim.in_doubt`; a dead attempt's doubt starts when its lease ran out). `sent`,
    `rejected`, `holdout` and `expired` rows are never touched; a `pending` row under a live lease
    neither, even one of this run (an earlier attempt of the same task may still be sending it).
    With `cap` (marketing mails), the customers are locked, the cap is re-checked against the
    claimed rows committed so far and the entries over it are not claimed (`Claim.capped`).
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
    """One claim transaction: (lock the customers and) read the rows that exist, apply the cap, take
    or insert, and classify from what the statements returned (a state read only for rows that
    changed under us, or everything on MariaDB, which cannot return updated rows)."""
    token = uuid.uuid4().hex
    lease_until = now + timedelta(seconds=lease_seconds)
    capped: list[str] = []
    keys = list(by_key)
    with write_transaction(engine) as conn:
        wanted = list(by_key.values())
        if cap is not None and wanted:
            _lock_customers(engine, conn, [e.customer_id for e in wanted])
        known = _states(conn, keys)
        wanted = [e for e in wanted if known.get(e.key, ("",))[0] not in FINAL_STATES]
        if cap is not None and wanted:
            status = {k: state[0] for k, state in known.items()}
            # a `pending`/`in_doubt` row already holds its slot (it counts for every other claim)
            holding = [e for e in wanted if status.get(e.key) in ("pending", IN_DOUBT)]
            wanted = [e for e in wanted if status.get(e.key) not in ("pending", IN_DOUBT)]
            candidates = [(int(e.customer_id), e.key) for e in wanted]
            history = _recent_tuples(conn, [c for c, _ in candidates], cap.campaigns, cap.since)
            keep = cap.keep(candidates, history) if candidates else []
            capped = [e.key for e, ok in zip(wanted, keep, strict=True) if not ok]
            wanted = holding + [e for e, ok in zip(wanted, keep, strict=True) if ok]
        found = known
        if wanted:
            doubt_before = now - timedelta(seconds=doubt_grace_s)
            won = _take(conn, wanted, known, run_id, provider, token, now, lease_until, doubt_before)
            if won is None:  # MariaDB: read what happened
                found = _states(conn, keys)
            else:
                found = {**known, **won}
                # rows we tried and did not win, or inserted by a concurrent claimer first: as they are now
                changed = [e.key for e in wanted if e.key not in won]
                if changed:
                    found.update(_states(conn, changed))
    return _classify(by_key, found, token, run_id, now, set(capped))


def _classify(
    by_key: dict[str, LedgerEntry],
    found: dict[str, _State],
    token: str,
    run_id: str,
    now: datetime,
    capped: set,
) -> Claim:
    """Sort the claimed keys by what the claim call found and won (see `Claim`)."""
    fresh, retry, in_doubt, awaiting, held, own, done = [], [], [], [], [], [], []
    held_until: datetime | None = None
    held_runs: Counter = Counter()
    marks = {f"{token}:n": fresh, f"{token}:f": retry, f"{token}:d": in_doubt}
    for key in by_key:
        status, owner, lease, owner_run = found.get(key, ("", None, None, None))
        won = marks.get(owner or "")
        if won is not None and status == "pending":
            won.append(key)
        elif key in capped:
            continue
        elif status in FINAL_STATES:
            if owner_run == run_id:
                done.append(key)
        elif status == IN_DOUBT or (status == "pending" and (lease is None or lease < now)):
            awaiting.append(key)
        else:
            held.append(key)
            held_runs[owner_run or ""] += 1
            if lease is not None and (held_until is None or lease > held_until):
                held_until = lease
            if owner_run == run_id:
                own.append(key)
    return Claim(
        fresh, in_doubt, held, sorted(capped), token, retry, awaiting, own, done, held_until, dict(held_runs)
    )


def mark_requested(engine: Engine, keys: Sequence[str], token: str, now: datetime | None = None) -> set[str]:
    """Fence and record a request before it goes out: the rows among `keys` this attempt (`token`)
    still owns get `requested_at`; returns those keys. Only they may be sent: a row another attempt
    took over meanwhile (this attempt's lease ran out) is left to it."""
    if not keys:
        return set()
    now = now or utcnow()
    c = send_ledger.c
    mine = _owned_by(token) & (c.status == "pending")

    def once() -> set[str]:
        with engine.begin() as conn:
            changed = 0
            for chunk in _chunks(list(keys)):
                changed += conn.execute(
                    update(send_ledger)
                    .where(one_of(c.message_key, chunk, conn.dialect), mine)
                    .values(requested_at=now)
                ).rowcount
            if changed == len(set(keys)):
                return set(keys)
            owned: set[str] = set()
            for chunk in _chunks(list(keys)):
                owned.update(
                    k
                    for (k,) in conn.execute(
                        select(c.message_key).where(one_of(c.message_key, chunk, conn.dialect), mine)
                    )
                )
            return owned

    return retry_on_deadlock(once)


def held_by_run(
    engine: Engine, keys: Sequence[str], run_id: str, now: datetime | None = None
) -> datetime | None:
    """When the last live lease of `run_id` over `keys` ends (`pending` rows of an earlier attempt of
    this run: a re-executed task waits for it), or None when there is none."""
    now = now or utcnow()
    c = send_ledger.c
    latest: datetime | None = None
    with engine.connect() as conn:
        for chunk in _chunks(list(keys)):
            found = conn.execute(
                select(func.max(c.lease_until)).where(
                    one_of(c.message_key, chunk, conn.dialect),
                    c.run_id == run_id,
                    c.status == "pending",
                    c.lease_until >= now,
                )
            ).scalar()
            if found is not None and (latest is None or found > latest):
                latest = found
    return latest


def run_counts(engine: Engine, run_id: str) -> Counter:
    """What the ledger says a run's attempts did: its rows by state (`sent`, `rejected`, `failed`,
    `in_doubt`, `pending`: still open), plus `sent_before_crash` (doubtful rows proved sent, not
    resent) and `resent_after_doubt` (doubtful rows without proof, sent once more), both within
    `sent`. Holdout rows are not counted."""
    c = send_ledger.c
    counts: Counter = Counter()
    with engine.connect() as conn:
        how = func.substr(c.claim_token, literal_column("34"), literal_column("1"))  # token:X -> X
        rows = conn.execute(
            select(c.status, how, func.count())
            .where(c.run_id == run_id, c.status != "holdout")
            .group_by(c.status, how)
        )
        for status, how, n in rows:
            counts[status] += n
            if status == "sent" and how == "p":
                counts["sent_before_crash"] += n
            elif status == "sent" and how == "d":
                counts["resent_after_doubt"] += n
    return counts


OPEN_STATES = ("pending", "failed", IN_DOUBT)


def open_rows(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The run's rows not final yet (`pending`, `failed`, `in_doubt`): message_key, customer_id,
    status, lease_until, requested_at, doubt_since."""
    c = send_ledger.c
    query = select(
        c.message_key, c.customer_id, c.status, c.lease_until, c.requested_at, c.doubt_since, c.updated_at
    ).where(c.run_id == run_id, c.status.in_(OPEN_STATES))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def takeable_now(row: dict[str, Any], now: datetime, doubt_grace_s: float) -> bool:
    """Whether a claim now would take the open row (see `_take`): failed; pending under an expired
    lease, never requested or in doubt longer than the grace; in doubt longer than the grace."""
    grace = timedelta(seconds=doubt_grace_s)
    if row["status"] == "failed":
        return True
    if row["status"] == IN_DOUBT:
        return row["doubt_since"] is not None and row["doubt_since"] <= now - grace
    lease = row["lease_until"]
    if lease is not None and lease >= now:
        return False
    return row["requested_at"] is None or (lease or row["updated_at"]) <= now - grace


def close_unsent(
    engine: Engine, keys: Sequence[str], run_id: str, reason: str, now: datetime | None = None
) -> int:
    """Close open rows of `run_id` whose occasion is over (a recovery found them no longer due):
    `expired` (final) with `reason`, unless another attempt took them meanwhile. Returns how many."""
    if not keys:
        return 0
    now = now or utcnow()
    c = send_ledger.c
    dead = c.lease_until.is_(None) | (c.lease_until < now)
    closable = (c.status.in_(("failed", IN_DOUBT))) | ((c.status == "pending") & dead)
    changed = 0
    with engine.begin() as conn:
        for chunk in _chunks(list(keys)):
            changed += conn.execute(
                update(send_ledger)
                .where(one_of(c.message_key, chunk, conn.dialect), c.run_id == run_id, closable)
                .values(status="expired", error=reason[:500], updated_at=now, lease_until=None)
            ).rowcount
    return changed


def renew_lease(engine: Engine, run_id: str, token: str, lease_seconds: float) -> int:
    """Extend the lease of the rows an attempt (`token`) won that are still `pending`; returns how many."""
    if not token:
        return 0
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(
            update(send_ledger)
            .where(_owned_by(token), send_ledger.c.status == "pending")
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


def mark(
    engine: Engine,
    results: Sequence[SendResult],
    run_id: str | None = None,
    *,
    token: str | None = None,
    proved: bool = False,
) -> None:
    """Record provider outcomes (sent / rejected / failed / in_doubt) for claimed keys. With `token`,
    only the `pending` rows that attempt still owns are updated (a row another attempt took over is
    its to mark); with `run_id` only, rows of that run not marked `sent` meanwhile; with neither, any
    row. `proved`: the rows were sent by an earlier attempt, as proof showed (`token:p`, counted as
    sent before a crash). The lease ends with the row's `pending` state; an `in_doubt` outcome starts
    the doubt (`doubt_since`). Outcomes sharing status, message id and error (a 1,000-recipient
    request) are one statement."""
    if not results:
        return
    now = utcnow()
    c = send_ledger.c
    groups: dict[tuple[str, str | None, str | None], list[str]] = {}
    for r in results:
        groups.setdefault((str(r.status), r.provider_message_id, _error(r.error)), []).append(r.message_key)
    owner: list[Any] = []
    if token is not None:
        owner = [_owned_by(token), c.status == "pending"]
    elif run_id is not None:
        owner = [c.run_id == run_id, c.status != "sent"]
    extra: dict[str, Any] = {"claim_token": f"{token}:p"} if proved and token else {}

    def values(status: Any, pid: Any, error: Any, doubt: Any) -> dict[str, Any]:
        common = {"updated_at": now, "lease_until": None, **extra}
        return {"status": status, "provider_message_id": pid, "error": error, "doubt_since": doubt, **common}

    with engine.begin() as conn:
        if len(groups) <= 8:
            for (status, pid, error), keys in groups.items():
                doubt = now if status == IN_DOUBT else None
                for chunk in _chunks(keys):
                    conn.execute(
                        update(send_ledger)
                        .where(one_of(c.message_key, chunk, conn.dialect), *owner)
                        .values(**values(status, pid, error, doubt))
                    )
            return
        conn.execute(  # one value set per mail (outbox, memory: a message id each): executemany
            update(send_ledger)
            .where(c.message_key == bindparam("k"), *owner)
            .values(**values(bindparam("s"), bindparam("pid"), bindparam("err"), bindparam("ds"))),
            [
                {"k": key, "s": status, "pid": pid, "err": error, "ds": now if status == IN_DOUBT else None}
                for (status, pid, error), keys in groups.items()
                for key in keys
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


def confirm_sent(
    engine: Engine,
    proofs: dict[str, str | None],
    now: datetime | None = None,
    *,
    run_id: str | None = None,
    token: str | None = None,
) -> int:
    """Mark doubtful rows (`in_doubt`, or `pending` under an expired lease) `sent` on proof of
    acceptance (key -> provider message id or None); rows in any other state are left alone (a live
    run's pending row is its run's to mark). With `run_id` and `token`, the run that found the proof
    adopts the rows (its report counts them, as sent before a crash). Returns how many rows changed."""
    if not proofs:
        return 0
    now = now or utcnow()
    c = send_ledger.c
    changed = 0
    adopt = {"run_id": run_id, "claim_token": f"{token}:p"} if run_id and token else {}
    with engine.begin() as conn:
        for key, message_id in sorted(proofs.items()):
            values: dict[str, Any] = {"status": "sent", "updated_at": now, "lease_until": None, **adopt}
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
            return sum(1 for _, owner, _, _ in _states(conn, list(by_key)).values() if owner == token)

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


def _recent_tuples(
    conn: Connection, customer_ids: Sequence[int], campaigns: Iterable[str], since: datetime
) -> list[tuple]:
    """`_recent_rows` as plain tuples (customer_id, campaign, message_key, created_at): what the
    claim-time cap reads, without building a frame."""
    wanted = sorted(set(customer_ids))
    names = sorted(set(campaigns))
    if not wanted or not names:
        return []
    c = send_ledger.c
    found: list[tuple] = []
    for start in range(0, len(wanted), _CHUNK):
        query = select(c.customer_id, c.campaign, c.message_key, c.created_at).where(
            c.status.in_(CLAIMED_STATES),
            c.campaign.in_(names),
            c.created_at >= since,
            one_of(c.customer_id, wanted[start : start + _CHUNK], conn.dialect),
        )
        found.extend(tuple(row) for row in conn.execute(query))
    return found


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
    import pandas as pd

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
        query = query.where(one_of(send_ledger.c.customer_id, sorted(wanted), conn.dialect))
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
