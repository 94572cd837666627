"""A/B tests in the state DB (`ab_tests`): one row per test, the phase it is in, the decision.

`testing` (the test group is being sent) -> `waiting` (sent; the wait runs until `decide_after`)
-> `decided` (winner chosen: by the test, by default when there is no clear winner, or by a
marketer) -> `done` (the winner went to everyone else). Each step is a compare-and-set from the step
before, so two runs never both move a test on, and a run that crashed resumes the step it was in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from shopmail.state.ledger import insert_if_absent
from shopmail.state.schema import ab_tests
from shopmail.state.state_db import utcnow

TESTING, WAITING, DECIDED, DONE = "testing", "waiting", "decided", "done"


def get_test(engine: Engine, campaign: str, test_key: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(ab_tests).where(ab_tests.c.campaign == campaign, ab_tests.c.test_key == test_key)
        ).first()
    return dict(row._mapping) if row else None


def start_test(
    engine: Engine, campaign: str, test_key: str, run_id: str, variants: Sequence[str], metric: str
) -> dict[str, Any]:
    """The test of (`campaign`, `test_key`): created `testing` if new, else as it stands."""
    row = {
        "campaign": campaign,
        "test_key": test_key[:128],
        "status": TESTING,
        "run_id": run_id,
        "variants": list(variants),
        "metric": metric,
        "started_at": utcnow(),
    }
    with engine.begin() as conn:
        conn.execute(insert_if_absent(conn.dialect, ab_tests), [row])
    found = get_test(engine, campaign, test_key[:128])
    assert found is not None
    return found


def _move(engine: Engine, test_id: int, before: str, **values: Any) -> bool:
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(ab_tests).where(ab_tests.c.id == test_id, ab_tests.c.status == before).values(**values)
            ).rowcount
        )


def mark_waiting(
    engine: Engine, test_id: int, decide_after: datetime, sent_at: datetime | None = None
) -> bool:
    """The test group is sent: wait until `decide_after`."""
    return _move(
        engine, test_id, TESTING, status=WAITING, test_sent_at=sent_at or utcnow(), decide_after=decide_after
    )


def mark_decided(
    engine: Engine, test_id: int, winner: str, decided_by: str, decision: dict[str, Any]
) -> bool:
    """The winner is chosen (`decided_by`: test, no_difference or marketer)."""
    return _move(
        engine,
        test_id,
        WAITING,
        status=DECIDED,
        winner=winner,
        decided_by=decided_by,
        decision=decision,
        decided_at=utcnow(),
    )


def mark_done(engine: Engine, test_id: int) -> bool:
    """The winner went to everyone else."""
    return _move(engine, test_id, DECIDED, status=DONE, finished_at=utcnow())


def recent_tests(engine: Engine, campaign: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Newest tests first."""
    query = select(ab_tests).order_by(ab_tests.c.started_at.desc()).limit(limit)
    if campaign:
        query = query.where(ab_tests.c.campaign == campaign)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
