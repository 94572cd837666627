"""State DB migrations, the send ledger's exactly-once rules, suppressions and run summaries."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from shopmail.mailer.base import SendResult, SendStatus
from shopmail.state import ledger, state_db
from shopmail.state.ledger import LedgerEntry
from shopmail.state.schema import send_ledger


@pytest.fixture
def state(tmp_path: Path):
    return state_db.upgrade(f"sqlite:///{tmp_path / 'state.sqlite'}")


def test_migrations_create_every_table_and_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    engine = state_db.upgrade(url)
    state_db._migrated.discard(url)
    state_db.upgrade(url)  # a second upgrade is a no-op
    tables = set(inspect(engine).get_table_names())
    assert {"send_ledger", "suppressions", "run_summaries", "quarantined_rows", "alembic_version"} <= tables


def test_message_key_is_deterministic_and_has_no_personal_data() -> None:
    key = ledger.message_key("wakeup", "wakeup7:order:5", 42)
    assert key == ledger.message_key("wakeup", "wakeup7:order:5", 42)
    assert key != ledger.message_key("wakeup", "wakeup14:order:5", 42)
    assert len(key) == 40 and set(key) <= set("0123456789abcdef")


def _entries(n: int, campaign: str = "wakeup") -> list[LedgerEntry]:
    return [LedgerEntry(campaign, f"occ:{i}", i) for i in range(n)]


def test_claim_then_mark_then_never_again(state) -> None:
    entries = _entries(5)
    first = ledger.claim(state, entries, "run-1", "outbox")
    allowed = first.keys
    assert first.fresh == [e.key for e in entries] and first.in_doubt == []
    ledger.mark(state, [SendResult(k, SendStatus.sent, f"id-{k}") for k in allowed[:3]])
    ledger.mark(state, [SendResult(allowed[3], SendStatus.rejected, error="bad address")])
    # entry 4 stays pending (a crash between send and mark): while run-1's lease runs it is its own
    assert ledger.already_done(state, allowed) == set(allowed[:4])
    live = ledger.claim(state, entries, "run-2", "outbox")
    assert live.keys == [] and live.held_by_other == [allowed[4]]
    # once the lease expired (run-1 is dead) the next run takes it over, in doubt
    later = state_db.utcnow() + timedelta(seconds=ledger.DEFAULT_LEASE_S + 1)
    again = ledger.claim(state, entries, "run-2", "outbox", now=later)
    assert again.fresh == [] and again.in_doubt == [allowed[4]] and again.held_by_other == []
    with state.connect() as conn:
        row = conn.execute(select(send_ledger).where(send_ledger.c.message_key == allowed[4])).one()
    assert row.status == "pending" and row.run_id == "run-2" and row.attempts == 2


def test_failed_entries_are_retried_by_the_next_run(state) -> None:
    entries = _entries(2)
    keys = ledger.claim(state, entries, "run-1", "sendgrid").keys
    ledger.mark(
        state, [SendResult(keys[0], SendStatus.failed, error="503"), SendResult(keys[1], SendStatus.sent)]
    )
    assert ledger.claim(state, entries, "run-2", "sendgrid").retry == [keys[0]]  # not accepted: retried
    assert ledger.counts_by_status(state, "wakeup") == {"pending": 1, "sent": 1}


def test_unique_occasion_per_campaign_and_customer(state) -> None:
    ledger.claim(state, _entries(1, "wakeup"), "r", "outbox")
    # the same occasion in another campaign is a different mail
    assert len(ledger.claim(state, _entries(1, "birthday"), "r", "outbox").fresh) == 1


def test_suppressions_are_case_insensitive(state) -> None:
    assert state_db.add_suppression(state, "Ann@Example.COM", "unsubscribe", "test")
    assert not state_db.add_suppression(state, "ann@example.com", "bounce", "test")
    assert state_db.suppressed_emails(state, ["ANN@example.com", "bob@example.com", ""]) == {
        "ann@example.com"
    }


def test_run_summary_roundtrip(state) -> None:
    state_db.start_run(state, "r1", "wakeup", date(2026, 11, 23), dry_run=False)
    state_db.finish_run(state, "r1", "completed", {"audience": 10, "sent": 7, "bogus": 1}, {"x": 1})
    [run] = state_db.recent_runs(state, "wakeup")
    assert (run["status"], run["audience"], run["sent"], run["details"]) == ("completed", 10, 7, {"x": 1})
    assert run["finished_at"] is not None
