"""Runs that finish themselves: close the summaries of runs whose process died, finish their open mails.

A run's process beats its summary (`state_db.RunHeartbeat`); a `running` summary whose heartbeat is
older than a lease belongs to a dead process (SIGKILL, a lost machine, a crashed container). The
recovery step (flows/recovery.py, every few minutes) closes such a summary as `crashed`, with the
counts the ledger holds for the run, and finishes its mails by running the campaign again for the
same day and segment, restricted to the run's open mails and the ones no run ever claimed (the
batches it never reached; `resume_of`): the ledger then sends what was never requested, resolves
doubt by proof, and resends doubtful mails once only after the grace period. A run stopped by
SIGTERM (a container or service stop), or one whose send batches failed as a whole (a worker
process died), is finished the same way; one stopped by a person (Ctrl-C, SIGINT) or failed for a
reason a person must fix (a template, the data) is not. Finished runs whose ledger later shows more
mails sent than their report said (a batch that outlived its flow) get their count corrected and a
note (`late_sent`) that `shopmail history` shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from shopmail.state import ledger, state_db
from shopmail.state.schema import run_summaries

RESUMABLE_STATUSES = ("crashed", "interrupted", "failed")  # failed: only when batches failed as a whole
MAX_RECOVERY_ATTEMPTS = 3  # a run whose mails are still open after this many recoveries needs a person
RECOVERY_DAYS = 7  # runs older than this are not resumed (their occasions are long over)
LATE_CHECK_HOURS = 6  # finished runs checked for mails sent after their report
RECOVERY_COMPLETE = "recovery_complete"  # in a stopped run's details: a recovery run went through it


@dataclass(frozen=True)
class DeadRun:
    """A `running` summary whose process stopped beating."""

    run_id: str
    campaign: str
    as_of: date
    dry_run: bool
    last_beat: datetime
    details: dict[str, Any]


@dataclass(frozen=True)
class Resumable:
    """A stopped run with mails a claim would take now (`ready`) out of `open` ones."""

    run_id: str
    campaign: str
    as_of: date
    segment: str | None
    open: int
    ready: int
    attempts: int


def dead_runs(engine: Engine, lease_s: float, now: datetime | None = None) -> list[DeadRun]:
    """`running` summaries silent for more than `lease_s` (three missed heartbeats and more)."""
    now = now or state_db.utcnow()
    c = run_summaries.c
    cutoff = now - timedelta(seconds=lease_s)
    query = select(c.run_id, c.campaign, c.as_of, c.dry_run, c.heartbeat_at, c.started_at, c.details).where(
        c.status == "running"
    )
    found = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            last = row.heartbeat_at or row.started_at
            if last < cutoff:
                found.append(
                    DeadRun(row.run_id, row.campaign, row.as_of, row.dry_run, last, row.details or {})
                )
    return found


def close_dead_run(engine: Engine, run: DeadRun) -> Counter:
    """Close a dead run's summary as `crashed` with the ledger's counts of it; returns them."""
    counts = ledger.run_counts(engine, run.run_id)
    opened = sum(counts.get(s, 0) for s in ledger.OPEN_STATES)
    details = {
        **run.details,
        "outcomes": {k: int(v) for k, v in counts.items()},
        "problem": (
            f"the run's process stopped at about {run.last_beat:%Y-%m-%d %H:%M} UTC (killed or crashed); "
            + (
                f"{opened:,} of its mails were still open: the recovery step finishes them"
                if opened and not run.dry_run
                else "nothing of it was left open"
            )
        ),
    }
    summary = {k: int(counts.get(k, 0)) for k in ("sent", "failed", "rejected")}
    state_db.finish_run(engine, run.run_id, "crashed", summary, details)
    return counts


def resumable_runs(
    engine: Engine,
    doubt_grace_s: float,
    polled: set[str],
    now: datetime | None = None,
    max_attempts: int = MAX_RECOVERY_ATTEMPTS,
) -> list[Resumable]:
    """Stopped real runs (crashed, or interrupted by SIGTERM) of campaigns that are not polled (the
    poller re-reads its own window) with open mails that a claim would take now, or whose doubt a
    webhook event already settled; at most `max_attempts` recoveries each."""
    now = now or state_db.utcnow()
    c = run_summaries.c
    query = select(c.run_id, c.campaign, c.as_of, c.status, c.details).where(
        c.status.in_(RESUMABLE_STATUSES),
        c.dry_run.is_(False),
        c.started_at >= now - timedelta(days=RECOVERY_DAYS),
    )
    with engine.connect() as conn:
        runs = conn.execute(query).all()
    found = []
    for run in runs:
        details = run.details or {}
        if run.campaign in polled or details.get("interrupted_by") == "SIGINT":
            continue
        if run.status == "failed" and not details.get("batches_failed"):
            continue  # a template or data problem: a person fixes it first
        attempts = int(details.get("recovery_attempts", 0))
        if attempts >= max_attempts:
            continue
        rows = ledger.open_rows(engine, run.run_id)
        finished = bool(details.get(RECOVERY_COMPLETE))
        if not rows and finished:
            continue
        ready = sum(1 for r in rows if ledger.takeable_now(r, now, doubt_grace_s))
        doubtful = [r["message_key"] for r in rows if not ledger.takeable_now(r, now, doubt_grace_s)]
        proved = len(ledger.proved_by_events(engine, doubtful)) if doubtful else 0
        # not finished yet: the batches it never reached left no rows, so it is resumed even with none
        if ready or proved or not finished:
            found.append(
                Resumable(
                    run.run_id,
                    run.campaign,
                    run.as_of,
                    details.get("segment"),
                    len(rows),
                    ready + proved,
                    attempts,
                )
            )
    return found


def note_recovery_attempt(engine: Engine, run_id: str, recovery_run: str) -> None:
    """Count a recovery of `run_id` in its summary's details."""
    run = state_db.get_run(engine, run_id) or {}
    details = dict(run.get("details") or {})
    details["recovery_attempts"] = int(details.get("recovery_attempts", 0)) + 1
    details["recovered_by"] = [*details.get("recovered_by", []), recovery_run][-MAX_RECOVERY_ATTEMPTS:]
    state_db.update_details(engine, run_id, details)


def note_recovery_complete(engine: Engine, run_id: str, recovery_run: str) -> None:
    """A recovery run went through all of `run_id`'s mails: only its rows still open (in doubt, say)
    bring it back to the recovery step."""
    run = state_db.get_run(engine, run_id) or {}
    details = dict(run.get("details") or {})
    details[RECOVERY_COMPLETE] = recovery_run
    state_db.update_details(engine, run_id, details)


def late_sends(engine: Engine, now: datetime | None = None) -> dict[str, int]:
    """Finished runs of the last hours whose ledger shows more mails sent than their report: their
    count is corrected and `late_sent` in the details notes the difference (`shopmail history` shows
    it); run id -> late mails found now."""
    now = now or state_db.utcnow()
    c = run_summaries.c
    query = select(c.run_id, c.sent, c.details).where(
        c.status.notin_(("running",)),
        c.dry_run.is_(False),
        c.finished_at >= now - timedelta(hours=LATE_CHECK_HOURS),
    )
    with engine.begin() as conn:
        return state_db.correct_late_sends(conn, conn.execute(query).all())
