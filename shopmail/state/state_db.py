"""Shopmail's state DB: migrations, suppressions and run summaries."""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Connection, Engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from shopmail.db import get_engine, sqlite_file
from shopmail.redaction import redact_data
from shopmail.state.schema import quarantined_rows, run_summaries, send_ledger, suppressions, watermarks

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_migrated: set[str] = set()


def utcnow() -> datetime:
    """Naive UTC now (the state DB stores naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


MIGRATION_LOCK_ID = 0x5E0D_3A11  # PostgreSQL advisory lock key of `upgrade`
MIGRATION_LOCK_NAME = "shopmail_state_migration"  # MariaDB/MySQL named lock of `upgrade`


@contextlib.contextmanager
def migration_lock(engine: Engine, url: str, timeout_s: int = 600) -> Iterator[None]:
    """Serialize migrations of one state DB across processes: two runs starting at once on a brand-new
    DB would both create the tables. SQLite: an exclusive `flock` on `<db file>.migrate.lock`;
    PostgreSQL: a session advisory lock; MariaDB/MySQL: `GET_LOCK`. Held by a connection of its own
    while Alembic works on another; the second process then finds the DB at head and does nothing."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        path = sqlite_file(url)
        if path is None:  # in-memory: one process only
            yield
            return
        with open(path.with_name(path.name + ".migrate.lock"), "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
            release = text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID}
        elif dialect in ("mysql", "mariadb"):
            got = conn.execute(
                text("SELECT GET_LOCK(:n, :t)"), {"n": MIGRATION_LOCK_NAME, "t": timeout_s}
            ).scalar()
            if got != 1:
                raise RuntimeError(f"could not take the migration lock within {timeout_s} s")
            release = text("SELECT RELEASE_LOCK(:n)"), {"n": MIGRATION_LOCK_NAME}
        else:
            release = None
        conn.commit()
        try:
            yield
        finally:
            if release is not None:
                conn.execute(*release)
                conn.commit()


def upgrade(url: str) -> Engine:
    """Bring the state DB at `url` to the latest migration (once per process, under `migration_lock`,
    so concurrent first starts are safe) and return its engine."""
    engine = get_engine(url)  # first: a new SQLite file is created private (0600) before Alembic opens it
    if url not in _migrated:
        with migration_lock(engine, url):
            command.upgrade(alembic_config(url), "head")
        _migrated.add(url)
    return engine


IN_CHUNK = 2000
SCAN_ABOVE = 50_000  # for more values than this one scan beats thousands of IN (...) queries


def present_values(
    engine: Engine | Connection, column: ColumnElement, values: Iterable[Any], *where: Any
) -> set[Any]:
    """The values among `values` that `column`'s table holds (rows also matching `where`); `engine`
    may be a connection (its transaction sees its own writes)."""
    wanted = set(values)
    if not wanted:
        return set()
    connected = contextlib.nullcontext(engine) if isinstance(engine, Connection) else engine.connect()
    with connected as conn:
        if len(wanted) > SCAN_ABOVE:
            return {v for (v,) in conn.execute(select(column).where(*where)) if v in wanted}
        ordered = sorted(wanted)
        found: set[Any] = set()
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start : start + IN_CHUNK]
            found.update(v for (v,) in conn.execute(select(column).where(column.in_(chunk), *where)))
        return found


def suppressed_emails(engine: Engine, emails: Iterable[str]) -> set[str]:
    """The lower-cased addresses among `emails` that are suppressed."""
    return present_values(engine, suppressions.c.email, {e.lower() for e in emails if e})


def add_suppression(engine: Engine, email: str, reason: str, source: str) -> bool:
    """Suppress an address; returns False if it already was."""
    with engine.begin() as conn:
        exists = conn.execute(
            select(suppressions.c.email).where(suppressions.c.email == email.lower())
        ).first()
        if exists:
            return False
        conn.execute(
            insert(suppressions).values(
                email=email.lower(), reason=reason, source=source, created_at=utcnow()
            )
        )
    return True


def start_run(
    engine: Engine, run_id: str, campaign: str, as_of: date, dry_run: bool, details: Any = None
) -> None:
    """Open a run summary (`running`, heartbeat now); `details`: what a recovery needs to finish the
    run the same way (segment, limit)."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(run_summaries).values(
                run_id=run_id,
                campaign=campaign,
                as_of=as_of,
                dry_run=dry_run,
                status="running",
                started_at=now,
                heartbeat_at=now,
                details=redact_data(details) if details is not None else None,
            )
        )


def beat_run(engine: Engine, run_id: str) -> None:
    """The run's process is alive (`heartbeat_at` = now) while its summary is `running`."""
    with engine.begin() as conn:
        conn.execute(
            run_summaries.update()
            .where(run_summaries.c.run_id == run_id, run_summaries.c.status == "running")
            .values(heartbeat_at=utcnow())
        )


class RunHeartbeat:
    """Beats a run summary every `interval_s` from a background thread while the run's process lives;
    a run whose heartbeat stopped for a lease is dead (`shopmail.run.recovery` closes and finishes
    it). A failed beat is retried at the next one. Use as a context manager."""

    def __init__(self, engine: Engine, run_id: str, interval_s: float) -> None:
        self.engine, self.run_id, self.interval_s = engine, run_id, max(0.5, interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="run-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                beat_run(self.engine, self.run_id)

    def __enter__(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def update_details(engine: Engine, run_id: str, details: Any) -> None:
    """Replace a run summary's details (stored redacted)."""
    with engine.begin() as conn:
        conn.execute(
            run_summaries.update()
            .where(run_summaries.c.run_id == run_id)
            .values(details=redact_data(details))
        )


def get_run(engine: Engine, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(run_summaries).where(run_summaries.c.run_id == run_id)).first()
    return dict(row._mapping) if row else None


def finish_run(engine: Engine, run_id: str, status: str, counts: dict[str, int], details: Any) -> None:
    """Close a run summary; every string in `details` (errors, problem) is stored redacted."""
    values = {k: int(v) for k, v in counts.items() if k in run_summaries.c}
    with engine.begin() as conn:
        conn.execute(
            run_summaries.update()
            .where(run_summaries.c.run_id == run_id)
            .values(status=status, finished_at=utcnow(), details=redact_data(details), **values)
        )


def finish_if_running(engine: Engine, run_id: str, status: str, counts: dict[str, int], details: Any) -> bool:
    """Close a run summary that is still `running` (a step did not record its end); returns whether
    it was."""
    values = {k: int(v) for k, v in counts.items() if k in run_summaries.c}
    with engine.begin() as conn:
        return bool(
            conn.execute(
                run_summaries.update()
                .where(run_summaries.c.run_id == run_id, run_summaries.c.status == "running")
                .values(status=status, finished_at=utcnow(), details=redact_data(details), **values)
            ).rowcount
        )


LATE_SENDS_STATES = ("failed", "interrupted", "crashed")


def correct_late_sends(conn: Connection, runs: Iterable[Any]) -> dict[str, int]:
    """Runs (rows with run_id, sent, details) whose ledger holds more sent mails than their summary:
    their `sent` becomes the ledger's, and `late_sent` in their details says how many of those were
    sent after the report was written (`shopmail history` shows it); run id -> mails added now."""
    stored = {r.run_id: (int(r.sent or 0), dict(r.details or {})) for r in runs}
    if not stored:
        return {}
    counted = conn.execute(
        select(send_ledger.c.run_id, func.count())
        .where(send_ledger.c.run_id.in_(list(stored)), send_ledger.c.status == "sent")
        .group_by(send_ledger.c.run_id)
    ).all()
    added: dict[str, int] = {}
    for run_id, n in counted:
        sent, details = stored[run_id]
        if n <= sent:
            continue
        added[run_id] = n - sent
        details["late_sent"] = int(details.get("late_sent", 0)) + n - sent
        conn.execute(
            run_summaries.update()
            .where(run_summaries.c.run_id == run_id)
            .values(sent=n, details=redact_data(details))
        )
    return added


def recount_late_sends(engine: Engine, campaign: str, as_of: date, run_id: str) -> int:
    """Correct the earlier runs of the same campaign and day that ended badly (failed, interrupted,
    crashed) from the ledger: a batch can still finish its request after its run recorded (a broken
    process pool terminates the surviving workers, which end their request first), and the rerun does
    not count mails that are already sent. Returns how many runs were corrected."""
    runs = run_summaries.c
    with engine.begin() as conn:
        closed = conn.execute(
            select(runs.run_id, runs.sent, runs.details).where(
                runs.campaign == campaign,
                runs.as_of == as_of,
                runs.dry_run.is_(False),
                runs.status.in_(LATE_SENDS_STATES),
                runs.run_id != run_id,
            )
        ).all()
        return len(correct_late_sends(conn, closed))


IDLE_POLLS = (run_summaries.c.campaign == "service_poller") & (run_summaries.c.audience == 0)


def recent_runs(
    engine: Engine, campaign: str | None = None, limit: int = 20, idle_polls: bool = False
) -> list[dict[str, Any]]:
    """Newest runs first; service-poller runs that found nothing are left out unless `idle_polls`."""
    query = select(run_summaries).order_by(run_summaries.c.started_at.desc()).limit(limit)
    if campaign:
        query = query.where(run_summaries.c.campaign == campaign)
    if not idle_polls:
        query = query.where(~IDLE_POLLS)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def record_quarantine(engine: Engine, run_id: str, rows: list[dict[str, str]]) -> int:
    """Store quarantined rows (table_name, row_key, check_name) for this run."""
    if not rows:
        return 0
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(quarantined_rows), [{**r, "run_id": run_id, "created_at": now} for r in rows])
    return len(rows)


def count_quarantined(engine: Engine, run_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(quarantined_rows).where(quarantined_rows.c.run_id == run_id)
        ).scalar_one()


def recent_audiences(engine: Engine, campaign: str, limit: int = 10) -> list[int]:
    """Eligible audience sizes of the campaign's last completed sending runs (newest first)."""
    query = (
        select(run_summaries.c.details, run_summaries.c.audience)
        .where(
            run_summaries.c.campaign == campaign,
            run_summaries.c.status == "completed",
            run_summaries.c.dry_run.is_(False),
        )
        .order_by(run_summaries.c.started_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [int((details or {}).get("eligible", audience)) for details, audience in rows]


def get_watermark(engine: Engine, name: str) -> datetime | None:
    """Naive UTC time before which the named event stream is handled, or None."""
    with engine.connect() as conn:
        return conn.execute(select(watermarks.c.value).where(watermarks.c.name == name)).scalar()


def set_watermark(engine: Engine, name: str, value: datetime) -> None:
    """Move the watermark forward (never back); two pollers at once: the later value wins."""
    now = utcnow()
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                current = conn.execute(select(watermarks.c.value).where(watermarks.c.name == name)).scalar()
                if current is None:
                    conn.execute(insert(watermarks).values(name=name, value=value, updated_at=now))
                else:  # compare-and-set in the statement itself: a concurrent move is never undone
                    conn.execute(
                        watermarks.update()
                        .where(watermarks.c.name == name, watermarks.c.value < value)
                        .values(value=value, updated_at=now)
                    )
            return
        except IntegrityError:  # the other poller inserted the first row meanwhile: update instead
            if attempt:
                raise
