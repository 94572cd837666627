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
    # entry 4 was requested, then the attempt crashed before its outcome was recorded: while run-1's
    # lease runs it is its own
    assert ledger.mark_requested(state, [allowed[4]], first.token) == {allowed[4]}
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
    assert row.requested_at is None  # the new attempt has not requested it yet


def test_a_dead_attempts_unrequested_rows_are_retried_not_doubted(state) -> None:
    """Rows a dead attempt claimed but never handed to the provider cannot have been sent: the next
    claim after its lease retakes them at once (no grace period, no proof needed)."""
    entries = _entries(3)
    first = ledger.claim(state, entries, "run-1", "sendgrid")
    ledger.mark_requested(state, [entries[0].key], first.token)
    later = state_db.utcnow() + timedelta(seconds=ledger.DEFAULT_LEASE_S + 1)
    again = ledger.claim(state, entries, "run-2", "sendgrid", now=later, doubt_grace_s=1800)
    assert sorted(again.retry) == sorted(e.key for e in entries[1:])
    assert again.in_doubt == [] and again.awaiting == [entries[0].key]


def test_an_attempt_never_retakes_rows_of_a_live_attempt_of_its_own_run(state) -> None:
    """A re-executed task (Dask re-ran it after its worker died, a process pool replaced its worker)
    is a new attempt of the same run: the earlier attempt's pending rows are held until its lease
    ends, never sent again at once."""
    entries = _entries(4)
    first = ledger.claim(state, entries, "run-1", "sendgrid")
    ledger.mark(state, [SendResult(entries[0].key, SendStatus.sent, "id-0")], token=first.token)
    second = ledger.claim(state, entries, "run-1", "sendgrid")
    assert second.keys == []
    assert sorted(second.held_by_own_run) == sorted(e.key for e in entries[1:])
    assert second.held_by_other == second.held_by_own_run and second.held_until is not None
    assert second.done_by_this_run == [entries[0].key]  # sent by the earlier attempt: not "already sent"


def test_the_request_fence_keeps_an_attempt_off_rows_another_attempt_took_over(state) -> None:
    """A slow attempt whose lease ran out loses its rows to the next claim; before each request it
    fences them (`mark_requested`) and sends only those it still owns, so the two never both send."""
    entries = _entries(3)
    slow = ledger.claim(state, entries, "run-1", "memory", lease_seconds=5)
    later = state_db.utcnow() + timedelta(seconds=6)
    taker = ledger.claim(state, entries[:2], "run-2", "memory", now=later)
    assert sorted(taker.retry) == sorted(e.key for e in entries[:2])
    assert ledger.mark_requested(state, [e.key for e in entries], slow.token) == {entries[2].key}
    # the slow attempt's outcome for rows it lost changes nothing
    ledger.mark(
        state, [SendResult(e.key, SendStatus.failed, error="late") for e in entries], token=slow.token
    )
    assert ledger.statuses(state, [e.key for e in entries]) == {
        entries[0].key: "pending",
        entries[1].key: "pending",
        entries[2].key: "failed",
    }


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


def test_mails_a_batch_sent_after_its_failed_run_recorded_are_counted_by_the_next_run(state) -> None:
    """A broken process pool fails the run while a surviving worker still ends its request: the run
    recorded fewer mails than its rows hold. The next run of the same campaign and day corrects it
    (never a completed run, another day's run or a dry run)."""
    day = date(2026, 11, 23)
    entries = _entries(6)
    first = ledger.claim(state, entries, "run-1", "outbox")
    for run_id, status, as_of, dry in (
        ("run-1", "failed", day, False),
        ("run-ok", "completed", day, False),
        ("run-other-day", "failed", day + timedelta(days=1), False),
        ("run-2", "running", day, False),
    ):
        state_db.start_run(state, run_id, "wakeup", as_of, dry_run=dry)
        if status != "running":
            state_db.finish_run(state, run_id, status, {"sent": 2}, {})
    ledger.mark(state, [SendResult(k, SendStatus.sent, f"id-{k}") for k in first.keys[:5]])  # late
    assert state_db.recount_late_sends(state, "wakeup", day, "run-2") == 1
    runs = {r["run_id"]: r for r in state_db.recent_runs(state, "wakeup")}
    sent = {k: r["sent"] for k, r in runs.items()}
    assert sent == {"run-1": 5, "run-ok": 2, "run-other-day": 2, "run-2": 0}
    assert runs["run-1"]["details"]["late_sent"] == 3
    assert state_db.recount_late_sends(state, "wakeup", day, "run-2") == 0  # once
