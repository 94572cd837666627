"""Shopmail's state DB: migrations, suppressions and run summaries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, func, insert, select

from shopmail.db import get_engine
from shopmail.state_schema import quarantined_rows, run_summaries, suppressions

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


def upgrade(url: str) -> Engine:
    """Bring the state DB at `url` to the latest migration (once per process) and return its engine."""
    if url not in _migrated:
        command.upgrade(alembic_config(url), "head")
        _migrated.add(url)
    return get_engine(url)


def suppressed_emails(engine: Engine, emails: Iterable[str]) -> set[str]:
    """The lower-cased addresses among `emails` that are suppressed."""
    wanted = sorted({e.lower() for e in emails if e})
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(wanted), 5000):
            chunk = wanted[start : start + 5000]
            rows = conn.execute(select(suppressions.c.email).where(suppressions.c.email.in_(chunk)))
            found.update(r[0] for r in rows)
    return found


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


def start_run(engine: Engine, run_id: str, campaign: str, as_of: date, dry_run: bool) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(run_summaries).values(
                run_id=run_id,
                campaign=campaign,
                as_of=as_of,
                dry_run=dry_run,
                status="running",
                started_at=utcnow(),
            )
        )


def finish_run(engine: Engine, run_id: str, status: str, counts: dict[str, int], details: Any) -> None:
    values = {k: int(v) for k, v in counts.items() if k in run_summaries.c}
    with engine.begin() as conn:
        conn.execute(
            run_summaries.update()
            .where(run_summaries.c.run_id == run_id)
            .values(status=status, finished_at=utcnow(), details=details, **values)
        )


def recent_runs(engine: Engine, campaign: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    query = select(run_summaries).order_by(run_summaries.c.started_at.desc()).limit(limit)
    if campaign:
        query = query.where(run_summaries.c.campaign == campaign)
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
