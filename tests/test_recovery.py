"""Runs that finish themselves, and stops that finish the story.

- A `shopmail run` SIGKILLed mid-send: nobody reruns it; the recovery step closes its summary as
  `crashed` with the ledger's counts and sends what it left open, exactly once.
- A rerun inside the dead run's lease says in words who holds the mails and when they are taken
  over, and exits 3 (not "Completed, sent 0"); with `--wait` it waits and sends them.
- SIGTERM during a send (a container stop): no new request goes out, the in-flight ones end and are
  recorded, the run is `interrupted` with its counts, the exit code is 143 with one sentence; the
  recovery step then finishes it. SIGINT (a person's Ctrl-C) is not resumed by recovery.
- A provider refusing every request for a reason that is not the recipients' (a bad From): the run
  pauses on the error budget, the mails stay `failed`, a rerun after the fix sends each once.
- A leftover batch that sends after its run's report: the recovery step notes it, history says so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from config.settings import Settings, get_settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import RunningSink, running_sink
from shopmail.devtools.sink_faults import Faults
from shopmail.run import recovery as rec
from shopmail.state import ledger, state_db
from shopmail.state.schema import run_summaries, send_ledger
from tests.sendgrid_env import sendgrid_process_env

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)
ROOT = Path(__file__).resolve().parent.parent
LEASE_S = 90  # longer than a CLI start-up on a busy machine: the rerun meets a live lease


def _env(settings: Settings, sink: RunningSink, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **sendgrid_process_env(
            settings,
            sink.url,
            SHOPMAIL_SEND_BATCH_SIZE="40",
            SHOPMAIL_CLAIM_LEASE_SECONDS=str(LEASE_S),
            SHOPMAIL_DOUBT_GRACE_MINUTES="0.05",
            SHOPMAIL_SENDGRID_CONCURRENCY="1",
            SHOPMAIL_TASK_RUNNER="threads",
            **extra,
        ),
    }


def _adopt(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """This process takes the subprocesses' SHOPMAIL_* settings (to run the recovery step itself)."""
    for key, value in env.items():
        if key.startswith("SHOPMAIL_"):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "shopmail.cli", *args]


def _per_customer(sink: RunningSink) -> Counter:
    return Counter(
        int(p["custom_args"]["customer_id"])
        for m in sink.store.messages
        for p in m.payload["personalizations"]
    )


def _summaries(settings: Settings) -> list[dict]:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(select(run_summaries).order_by(run_summaries.c.started_at)).all()
    return [dict(r._mapping) for r in rows]


def _open_keys(settings: Settings) -> list[str]:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.message_key).where(send_ledger.c.status.in_(ledger.OPEN_STATES))
        ).all()
    return [r.message_key for r in rows]


def _eligible(settings: Settings, campaign: str = "sale") -> set[int]:
    from shopmail.campaigns import get_campaign
    from shopmail.db import get_engine
    from shopmail.run.pipeline import select_recipients
    from shopmail.shop.extract import extract

    spec = get_campaign(campaign)
    frames = extract(get_engine(settings.shop_url_resolved), spec.datasets, AS_OF, settings.tz, 365)
    state = state_db.upgrade(settings.state_url_resolved)
    return set(select_recipients(spec, frames, AS_OF, settings, state, set()).eligible["customer_id"])


@pytest.fixture
def shop(settings: Settings) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=5, today=AS_OF)
    return settings


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        _cli(*args), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_sent(sink: RunningSink, count: int, process: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(_per_customer(sink).values()) < count:
        assert process.poll() is None, process.stdout.read() if process.stdout else "the run ended"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


def test_a_killed_run_is_closed_and_finished_by_the_recovery_step_exactly_once(
    prefect_harness, shop: Settings, monkeypatch
) -> None:
    eligible = _eligible(shop)
    with running_sink() as sink:
        sink.store.set_faults(Faults(slow_ms=150))
        env = _env(shop, sink)
        first = _start(env, "run", "sale", "--as-of", str(AS_OF), "--yes")
        _wait_for_sent(sink, len(eligible) // 3, first)
        first.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(30)
        sent_before = sum(_per_customer(sink).values())
        assert 0 < sent_before < len(eligible)

        # a rerun inside the lease: who holds the mails, when they are taken over; exit 3
        held = subprocess.run(
            _cli("run", "sale", "--as-of", str(AS_OF), "--yes"),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert held.returncode == 3, held.stdout + held.stderr
        assert "held by another run" in held.stdout
        # alive or not depends on how long ago its last heartbeat was: either is said, with the lease
        assert "was last seen alive" in held.stdout or "stopped without finishing them" in held.stdout
        assert "lease ends at" in held.stdout and "--wait" in held.stdout

        # nobody reruns it: the recovery step (what its deployment does every 2 minutes) finishes it
        _adopt(env, monkeypatch)
        time.sleep(max(0.0, killed_at + LEASE_S + 1 - time.monotonic()))
        from flows.recovery import recovery

        done = recovery()
        assert done["closed"] == 1 and done["resumed"] == 1
        # requests in flight at the kill left mails in doubt: they wait for proof until the dead run's
        # lease plus the grace is over; the next passes (every 2 minutes in production) finish them
        passes = 1
        for _ in range(4):
            if not _open_keys(shop):
                break
            time.sleep(5)  # the doubt grace (3 s) is over
            passes += recovery()["resumed"]
        assert not _open_keys(shop)
    per_customer = _per_customer(sink)
    assert max(per_customer.values()) == 1 and set(per_customer) == eligible
    runs = {r["run_id"]: r for r in _summaries(shop) if r["campaign"] == "sale"}
    crashed = [r for r in runs.values() if r["status"] == "crashed"]
    assert len(crashed) == 1 and "process stopped" in crashed[0]["details"]["problem"]
    assert crashed[0]["details"]["recovery_attempts"] == passes <= rec.MAX_RECOVERY_ATTEMPTS
    assert not any(r["status"] == "running" for r in runs.values())
    assert sum(r["sent"] for r in runs.values()) == sum(per_customer.values())
    state = state_db.upgrade(shop.state_url_resolved)
    assert not ledger.open_rows(state, crashed[0]["run_id"])
    # history says what happened to it
    from typer.testing import CliRunner

    from shopmail.cli import app

    shown = CliRunner().invoke(app, ["history", "sale"])
    assert "crashed" in shown.output and "finished by the recovery step" in shown.output


def test_a_rerun_with_wait_takes_over_after_the_lease(prefect_harness, shop: Settings) -> None:
    eligible = _eligible(shop)
    with running_sink() as sink:
        sink.store.set_faults(Faults(slow_ms=150))
        env = _env(shop, sink)
        first = _start(env, "run", "sale", "--as-of", str(AS_OF), "--yes")
        _wait_for_sent(sink, len(eligible) // 3, first)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        started = time.monotonic()
        waited = subprocess.run(
            _cli("run", "sale", "--as-of", str(AS_OF), "--yes", "--wait"),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert waited.returncode == 0, waited.stdout[-3000:] + waited.stderr[-3000:]
        assert "waiting for it, then sending them" in waited.stdout
        assert time.monotonic() - started >= LEASE_S * 0.5
        # what the killed run had handed to the server waits for proof (or the 3 s grace): settled next
        state = state_db.upgrade(shop.state_url_resolved)
        for _ in range(5):
            if not sum(ledger.counts_by_status(state, "sale").get(s, 0) for s in ledger.OPEN_STATES):
                break
            time.sleep(4)
            rerun = subprocess.run(
                _cli("run", "sale", "--as-of", str(AS_OF), "--yes"), env=env, cwd=ROOT, capture_output=True
            )
            assert rerun.returncode == 0
    per_customer = _per_customer(sink)
    assert max(per_customer.values()) == 1 and set(per_customer) == eligible


def test_sigterm_stops_new_requests_records_interrupted_and_recovery_finishes_it(
    prefect_harness, shop: Settings, monkeypatch
) -> None:
    eligible = _eligible(shop)
    with running_sink() as sink:
        sink.store.set_faults(Faults(slow_ms=300, answer_delay_ms=300))
        env = _env(shop, sink)
        first = _start(env, "run", "sale", "--as-of", str(AS_OF), "--yes")
        _wait_for_sent(sink, len(eligible) // 4, first)
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        output = first.communicate(timeout=120)[0]
        took = time.monotonic() - stopped_at
        sent_at_stop = sum(_per_customer(sink).values())
        assert first.returncode == 128 + signal.SIGTERM, output[-3000:]
        last = [line for line in output.strip().splitlines() if line.strip()][-1]
        assert last.startswith("Run stopped by SIGTERM"), output[-3000:]
        assert "Traceback" not in output
        assert took < 30  # in-flight requests end, nothing new starts
        assert sent_at_stop < len(eligible)
        time.sleep(2)
        assert sum(_per_customer(sink).values()) == sent_at_stop  # nothing after the stop
        [run] = [r for r in _summaries(shop) if r["campaign"] == "sale"]
        assert run["status"] == "interrupted" and run["sent"] == sent_at_stop
        assert run["details"]["interrupted_by"] == "SIGTERM"

        _adopt(env, monkeypatch)
        from flows.recovery import recovery

        assert recovery()["resumed"] == 1
    per_customer = _per_customer(sink)
    assert max(per_customer.values()) == 1 and set(per_customer) == eligible


def test_a_run_stopped_by_ctrl_c_is_not_resumed_by_recovery(
    prefect_harness, shop: Settings, monkeypatch
) -> None:
    eligible = _eligible(shop)
    with running_sink() as sink:
        sink.store.set_faults(Faults(slow_ms=300))
        env = _env(shop, sink)
        first = _start(env, "run", "sale", "--as-of", str(AS_OF), "--yes")
        _wait_for_sent(sink, len(eligible) // 4, first)
        first.send_signal(signal.SIGINT)
        output = first.communicate(timeout=120)[0]
        assert first.returncode == 128 + signal.SIGINT, output[-3000:]
        assert "stopped by SIGINT" in output
        _adopt(env, monkeypatch)
        from flows.recovery import recovery

        assert recovery()["resumed"] == 0  # a person stopped it: a person reruns it
    [run] = [r for r in _summaries(shop) if r["campaign"] == "sale"]
    assert run["status"] == "interrupted" and run["details"]["interrupted_by"] == "SIGINT"


def test_a_refusal_of_every_request_pauses_the_run_keeps_mails_failed_and_a_rerun_sends_them_once(
    prefect_harness, shop: Settings, monkeypatch
) -> None:
    from flows.campaign import configured_campaign_flow
    from flows.steps import SendingPaused

    eligible = _eligible(shop)
    with running_sink() as sink:
        _adopt(_env(shop, sink, SHOPMAIL_MAX_SEND_ERRORS="2"), monkeypatch)
        sink.store.fail_next.extend([400] * 10_000)  # "Bad Request" naming no recipient: every request
        paused_words = r"sending paused after \d+ failed requests \(limit 2\)"
        with pytest.raises(SendingPaused, match=paused_words) as paused:
            configured_campaign_flow()(campaign="sale", as_of=AS_OF, preapproved=True)
        # past the limit no new request starts; those already in flight on the other send threads end
        failed_requests = int(re.search(r"after (\d+) failed", str(paused.value)).group(1))
        assert 3 <= failed_requests <= 2 + shop.send_threads
        assert sink.store.messages == []
        counts = ledger.counts_by_status(state_db.upgrade(shop.state_url_resolved), "sale")
        assert "rejected" not in counts and counts.get("failed", 0) >= failed_requests * 40
        sink.store.fail_next.clear()  # the cause is fixed
        report = configured_campaign_flow()(campaign="sale", as_of=AS_OF, preapproved=True)
        assert report.counts()["sent"] == len(eligible)
    per_customer = _per_customer(sink)
    assert max(per_customer.values()) == 1 and set(per_customer) == eligible


def test_recovery_notes_mails_sent_after_a_runs_report(settings: Settings) -> None:
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.start_run(state, "r1", "sale", AS_OF, False)
    entries = [ledger.LedgerEntry("sale", f"sale:{i}", i) for i in range(5)]
    claim = ledger.claim(state, entries, "r1", "memory")
    ledger.mark(state, [ledger_result(k) for k in claim.keys[:3]], token=claim.token)
    state_db.finish_run(state, "r1", "failed", {"sent": 3}, {"problem": "gave up"})
    # a leftover batch of r1 sends the other two after the report
    ledger.mark(state, [ledger_result(k) for k in claim.keys[3:]], token=claim.token)
    assert rec.late_sends(state) == {"r1": 2}
    assert rec.late_sends(state) == {}  # noted once
    [run] = state_db.recent_runs(state, "sale")
    assert run["sent"] == 5  # the count is corrected, and the note says how many came late
    from shopmail.cli import run_note

    assert "2 of its mails were sent after this run's report" in run_note(run)


def test_a_dead_run_is_closed_as_crashed_with_the_ledgers_counts(settings: Settings) -> None:
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.start_run(state, "dead", "sale", AS_OF, False, {"segment": "vip", "limit": None})
    state_db.start_run(state, "alive", "sale", AS_OF, False)
    entries = [ledger.LedgerEntry("sale", f"sale:{i}", i) for i in range(4)]
    claim = ledger.claim(state, entries, "dead", "memory", lease_seconds=5)
    ledger.mark(state, [ledger_result(claim.keys[0])], token=claim.token)
    with state.begin() as conn:  # its last heartbeat was long ago
        conn.execute(
            update(run_summaries)
            .where(run_summaries.c.run_id == "dead")
            .values(heartbeat_at=state_db.utcnow() - timedelta(minutes=10))
        )
    dead = rec.dead_runs(state, lease_s=120)
    assert [d.run_id for d in dead] == ["dead"]
    counts = rec.close_dead_run(state, dead[0])
    assert counts["sent"] == 1 and counts["pending"] == 3
    run = state_db.get_run(state, "dead")
    assert run["status"] == "crashed" and run["sent"] == 1 and run["details"]["segment"] == "vip"
    later = state_db.utcnow() + timedelta(seconds=10)
    [resumable] = rec.resumable_runs(state, 0.0, polled=set(), now=later)
    assert (resumable.run_id, resumable.segment, resumable.open, resumable.ready) == ("dead", "vip", 3, 3)
    # every open row taken (say, by a rerun) does not finish it: the batches it never reached left
    # no rows, so only a recovery run that went through its selection does
    with state.begin() as conn:
        conn.execute(update(send_ledger).where(send_ledger.c.run_id == "dead").values(status="sent"))
    [resumable] = rec.resumable_runs(state, 0.0, polled=set(), now=later)
    assert (resumable.open, resumable.ready) == (0, 0)
    rec.note_recovery_complete(state, "dead", "recovery-run")
    assert rec.resumable_runs(state, 0.0, polled=set(), now=later) == []
    with state.begin() as conn:  # a doubt it left is settled later: that brings it back
        conn.execute(
            update(send_ledger).where(send_ledger.c.message_key == claim.keys[1]).values(status="failed")
        )
    assert [r.open for r in rec.resumable_runs(state, 0.0, polled=set(), now=later)] == [1]
    for _ in range(rec.MAX_RECOVERY_ATTEMPTS):
        rec.note_recovery_attempt(state, "dead", "x")
    assert rec.resumable_runs(state, 0.0, polled=set(), now=later) == []  # a person's turn now
    assert rec.resumable_runs(state, 0.0, polled={"sale"}, now=later) == []
    with state.connect() as conn:
        assert conn.execute(select(send_ledger.c.status).where(send_ledger.c.run_id == "alive")).all() == []


def ledger_result(key: str):
    from shopmail.mailer.base import SendResult, SendStatus

    return SendResult(key, SendStatus.sent, "pid")
