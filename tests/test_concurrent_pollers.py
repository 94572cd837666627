"""Two `shopmail poll` processes started at the same moment against one state DB and the local
SendGrid server (answering slowly, so they overlap), one SIGKILLed mid-send (keyed to the requests
seen at the server), then polls after the lease until every service mail is final in the ledger:
every welcome / order status / password reset mail of the demo shop's window reached the server
exactly once (counted by `shopmail_key`), none lost. State DB (and shop) on SQLite and PostgreSQL.

The signed event webhook feeds the real feedback app: it proves acceptance of the killed poller's
mails, so none is resent after its lease (without proof a mail in flight at the kill may go twice:
the documented bound, tests/test_crash_doubt.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, timedelta
from datetime import time as dt_time
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from config.settings import Settings, get_settings
from shopmail.db import get_engine
from shopmail.devtools import demo_shop
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.devtools.sink_faults import Faults
from shopmail.devtools.sink_webhook import WebhookConfig
from shopmail.run.pipeline import select_recipients
from shopmail.shop.extract import day_end_utc, extract
from shopmail.state import ledger, state_db
from shopmail.state.schema import run_summaries, send_ledger
from shopmail.web.feedback_app import running_feedback_app
from tasks.validate import drop_quarantined, validate_shop_data
from tests.sendgrid_env import sendgrid_process_env
from tests.test_shop_databases import SERVERS, _scratch_database

pytestmark = pytest.mark.flow
ROOT = Path(__file__).resolve().parent.parent
LOOKBACK_MIN = 3 * 24 * 60  # the first poll reads every recent event of the demo shop
LEASE_S = 5.0  # the smallest lease Settings allow
GRACE_MIN = 0.05  # 3 s: the webhook's delay (<= 1 s) stays well inside it
MAX_POLLS = 6


def _shop_instant(settings: Settings) -> tuple[date, dt_time]:
    """The demo shop's day and instant (shop time): 5 minutes ago, or yesterday 23:00 before 02:00 (the
    generator needs a day at least that long). Every event lies in the poller's past and the newest
    within the last 3 hours, at any time of day (a fixed 06:00 instant made the day's events up to 30
    hours old just before 06:00, past the 24-hour life of a password-reset link)."""
    local = (state_db.utcnow() - timedelta(minutes=5)).replace(tzinfo=UTC).astimezone(settings.tz)
    if local.time() >= dt_time(2, 0):
        return local.date(), local.time().replace(second=0, microsecond=0)
    return local.date() - timedelta(days=1), dt_time(23, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def poll_shop(request: pytest.FixtureRequest, settings: Settings, monkeypatch) -> Iterator[Settings]:
    """A ~800-customer demo shop whose service events are recent; for PostgreSQL the shop and the
    state DB are scratch databases there."""
    scratch = []
    if request.param == "postgresql":
        for var in ("SHOPMAIL_SHOP_DB_URL", "SHOPMAIL_STATE_DB_URL"):
            gen = _scratch_database(SERVERS["postgresql"])
            monkeypatch.setenv(var, next(gen))
            scratch.append(gen)
    monkeypatch.setenv("SHOPMAIL_POLL_FIRST_LOOKBACK_MINUTES", str(LOOKBACK_MIN))
    get_settings.cache_clear()
    shop_settings = get_settings()
    assert shop_settings.state_url_resolved.split(":")[0].startswith(request.param)
    day, instant = _shop_instant(settings)
    monkeypatch.setattr(demo_shop, "NOW_LOCAL_TIME", instant)
    generate_demo_shop(shop_settings.shop_url_resolved, customers=800, seed=7, today=day)
    try:
        yield shop_settings
    finally:
        for gen in scratch:
            next(gen, None)


def _expected_keys(settings: Settings, blank_state: str) -> dict[str, set[str]]:
    """Each polled campaign's message keys for a first poll now (the poller's own selection: audience
    in the window, quarantine and address filters), computed in this process against the empty state
    DB at `blank_state` (no ledger: sent mails stay in)."""
    from flows.service_poller import polled_campaigns

    now = state_db.utcnow()
    day = now.replace(tzinfo=UTC).astimezone(settings.tz).date()
    state = state_db.upgrade(blank_state)
    specs = polled_campaigns()
    datasets = sorted({d for spec in specs for d in spec.datasets})
    frames = extract(
        get_engine(settings.shop_url_resolved),
        datasets,
        day,
        settings.tz,
        max(spec.history_days for spec in specs),
        product_url=settings.product_url_template,
    )
    gate = validate_shop_data(frames, day, day_end_utc(day, settings.tz))
    frames = drop_quarantined(frames, gate)
    quarantined = {int(k) for k in gate.quarantined_keys("customers")}
    window = (now - timedelta(minutes=LOOKBACK_MIN), now)
    return {
        spec.name: set(
            select_recipients(spec, frames, day, settings, state, quarantined, window).eligible["message_key"]
        )
        for spec in specs
    }


def _env(settings: Settings, sink_url: str) -> dict[str, str]:
    return {
        **os.environ,
        **sendgrid_process_env(
            settings,
            sink_url,
            SHOPMAIL_SENDGRID_TIMEOUT_S="5",
            SHOPMAIL_SENDGRID_ACTIVITY_LOOKUP="false",
            SHOPMAIL_SEND_BATCH_SIZE="10",
            SHOPMAIL_CLAIM_LEASE_SECONDS=str(LEASE_S),
            SHOPMAIL_DOUBT_GRACE_MINUTES=str(GRACE_MIN),
            SHOPMAIL_POLL_FIRST_LOOKBACK_MINUTES=str(LOOKBACK_MIN),
            SHOPMAIL_SEND_THREADS="2",  # the campaign runs' batches at once
            PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS="2",  # the poller's (Prefect's default runner)
        ),
    }


def _poll(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shopmail.cli", "poll"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def _pollers_sending(state) -> int:
    """How many pollers hold pending (claimed, outcome not yet written) rows right now: a poll's
    campaign run id is uuid5(its flow run id, campaign)."""
    from flows.service_poller import polled_campaigns

    try:
        with state.connect() as conn:
            parents = conn.execute(
                select(run_summaries.c.run_id).where(run_summaries.c.campaign == "service_poller")
            ).scalars()
            owner = {
                str(uuid.uuid5(uuid.UUID(p), spec.name)): p for p in parents for spec in polled_campaigns()
            }
            runs = conn.execute(
                select(send_ledger.c.run_id).where(send_ledger.c.status == "pending").distinct()
            ).scalars()
            return len({owner[r] for r in runs if r in owner})
    except Exception:  # noqa: BLE001 - not migrated yet, or locked for a moment by a writer
        return 0


def _open_rows(state) -> dict[str, int]:
    with state.connect() as conn:
        rows = conn.execute(select(send_ledger.c.status, func.count()).group_by(send_ledger.c.status)).all()
    return {status: n for status, n in rows if status not in ledger.FINAL_STATES}


@pytest.mark.usefixtures("single_mail_welcome")  # its oracle: one welcome per registration in a poll
def test_two_pollers_at_once_one_killed_every_service_mail_exactly_once(
    prefect_harness, poll_shop: Settings, tmp_path: Path
) -> None:
    settings = poll_shop
    started = time.monotonic()
    blank = f"sqlite:///{tmp_path / 'blank_state.db'}"
    before = _expected_keys(settings, blank)
    assert all(before[name] for name in ("welcome", "password_reminder", "order_received")), before
    state = state_db.upgrade(settings.state_url_resolved)
    with running_sink() as sink:
        app_settings = settings.model_copy(
            update={"sendgrid_webhook_public_key": SecretStr(sink.store.webhook.public_key)}
        )
        with running_feedback_app(app_settings, state) as app:
            hook = WebhookConfig(f"{app.url}/sendgrid/events", delay_s=0.2, jitter_s=0.6, duplicate_rate=0.3)
            sink.store.webhook.configure(hook)
            env = _env(settings, sink.url)
            # slow answers until both pollers are sending: they really overlap
            sink.store.set_faults(Faults(slow_ms=400))
            victim, survivor = _poll(env), _poll(env)
            deadline = time.monotonic() + 60
            while (_pollers_sending(state) < 2 or sink.store.requests < 4) and time.monotonic() < deadline:
                assert victim.poll() is None and survivor.poll() is None, "a poller ended before the kill"
                time.sleep(0.02)
            # both are mid-send on the same window: their claims split it, each has a request open
            assert _pollers_sending(state) == 2 and sink.store.requests >= 4
            at_kill = sink.store.requests
            os.kill(victim.pid, signal.SIGKILL)  # mid-send: requests in flight, outcomes unwritten
            victim.wait(timeout=30)
            dead_pending = _open_rows(state).get("pending", 0)
            sink.store.set_faults(Faults(slow_ms=20))
            out, _ = survivor.communicate(timeout=300)
            print(f"kill at {time.monotonic() - started:.0f}s, survivor done")
            assert survivor.returncode == 0, out.decode(errors="replace")[-3000:]
            survivor_open = dict(_open_rows(state))

            polls = 0
            while _open_rows(state) and polls < MAX_POLLS:
                time.sleep(LEASE_S + 0.5)  # the dead poller's lease ran out; its doubts wait the grace
                time.sleep(GRACE_MIN * 60)
                polls += 1
                again = _poll(env)
                out, _ = again.communicate(timeout=300)
                assert again.returncode == 0, out.decode(errors="replace")[-3000:]
            assert not _open_rows(state), _open_rows(state)
            deadline = time.monotonic() + 15
            while sink.store.webhook.pending() and time.monotonic() < deadline:
                time.sleep(0.1)
        keys = sink.store.key_counts()
    after = _expected_keys(
        settings, blank
    )  # events crossing max_age meanwhile count only while they were due
    print(
        f"mails={sum(len(v) for v in before.values())} requests_at_kill={at_kill} "
        f"pending_after_kill={dead_pending} left_by_survivor={survivor_open} polls_after={polls} "
        f"at_server={len(keys)} took={time.monotonic() - started:.0f}s"
    )
    due = set().union(*before.values()) & set().union(*after.values())
    ever = set().union(*before.values()) | set().union(*after.values())
    assert len(due) > 30
    assert due <= set(keys)  # none lost
    assert max(keys.values()) == 1  # none twice
    assert set(keys) <= ever  # nothing else
    with state.connect() as conn:
        status = dict(conn.execute(select(send_ledger.c.message_key, send_ledger.c.status)).all())
    assert {status[k] for k in due} == {"sent"}
    assert dead_pending  # the kill left claimed mails without an outcome: taken over later
