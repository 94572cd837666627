"""Exactly once through crashes: a real `shopmail run` process killed with SIGKILL mid-send,
against the local SendGrid server injecting 429/5xx/dropped connections, then rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from config.settings import Settings, get_settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.state import ledger, state_db
from shopmail.state.ledger import LedgerEntry
from shopmail.state.schema import send_ledger
from tests.sendgrid_env import sendgrid_process_env
from tests.shop_oracle import expected_wakeup

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)
LEASE_S = 5  # the killed run's claimed rows are its own this long: the rerun waits it out
FAULTS = {
    "rate_429": 0.03,
    "rate_500": 0.03,
    "rate_503": 0.02,
    "rate_drop": 0.02,
    "retry_after_s": 1,
    "slow_ms": 25,
    "seed": 7,
}


def _sendgrid_env(settings: Settings, sink_url: str) -> dict[str, str]:
    return sendgrid_process_env(
        settings,
        sink_url,
        SHOPMAIL_SENDGRID_RETRIES="8",
        SHOPMAIL_SEND_BATCH_SIZE="25",
        SHOPMAIL_UNSUBSCRIBE_SECRET="test-secret",
        SHOPMAIL_CLAIM_LEASE_SECONDS=str(LEASE_S),
        # dropped connections leave requests in doubt: with no webhook, a rerun resends them once
        # after this grace (3 s)
        SHOPMAIL_DOUBT_GRACE_MINUTES="0.05",
        SHOPMAIL_SENDER_EMAIL="news@mailings.test",
    )


def _customers_in(sink) -> Counter:
    return Counter(
        int(p["custom_args"]["customer_id"])
        for m in sink.store.messages
        for p in m.payload["personalizations"]
    )


def _run(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shopmail.cli", "run", "wakeup", "--as-of", AS_OF.isoformat()],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_kill_9_mid_send_then_rerun_sends_every_mail_exactly_once(
    prefect_harness, settings: Settings
) -> None:
    generate_demo_shop(settings.shop_url_resolved, customers=12000, seed=5, today=AS_OF)
    expected = set(expected_wakeup(get_engine(settings.shop_url_resolved), AS_OF))
    assert len(expected) > 100

    with running_sink() as sink:
        assert httpx.put(f"{sink.url}/sink/faults", json=FAULTS, headers=sink.auth).status_code == 200
        env = _sendgrid_env(settings, sink.url)
        first = _run(env)
        deadline = time.monotonic() + 240
        while sum(_customers_in(sink).values()) < len(expected) // 3:
            assert first.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
        sent_before = _customers_in(sink)
        assert 0 < len(sent_before) < len(expected)
        time.sleep(LEASE_S + 1)  # a rerun inside the lease would leave the dead run's rows alone

        for _ in range(6):  # rerun until every mail is final (faults, doubts waiting for the grace)
            code = _run(env).wait(timeout=300)
            open_rows = {"pending", "failed", "in_doubt"} & set(
                ledger.counts_by_status(state_db.upgrade(settings.state_url_resolved), "wakeup")
            )
            if code == 0 and not open_rows:
                break
            time.sleep(4)
        else:
            pytest.fail("no rerun completed")

        received = _customers_in(sink)
        assert set(received) == expected  # nobody lost
        assert max(received.values()) == 1  # nobody twice
        stats = httpx.get(f"{sink.url}/sink/stats", headers=sink.auth).json()
        assert sum(stats["faults"].values()) > 0  # the faults really happened

    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.customer_id, send_ledger.c.status).where(send_ledger.c.status != "holdout")
        ).all()
    assert {r.customer_id for r in rows} == expected and {r.status for r in rows} == {"sent"}


def test_mails_accepted_before_a_crash_are_confirmed_not_resent(
    prefect_harness, settings: Settings, monkeypatch
) -> None:
    """The crash window itself: the provider accepted mails but the ledger still says pending."""
    from flows.campaign import campaign_flow
    from shopmail.campaigns import get_campaign
    from shopmail.mailer.factory import make_sender
    from shopmail.run.composer import MailComposer
    from shopmail.run.pipeline import product_lookup, select_recipients
    from shopmail.shop.extract import extract

    generate_demo_shop(settings.shop_url_resolved, customers=3000, seed=5, today=AS_OF)
    with running_sink() as sink:
        for key, value in _sendgrid_env(settings, sink.url).items():
            if key.startswith("SHOPMAIL_"):
                monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        current = get_settings()
        campaign = get_campaign("wakeup")
        frames = extract(get_engine(current.shop_url_resolved), campaign.datasets, AS_OF, current.tz, 400)
        state = state_db.upgrade(current.state_url_resolved)
        selection = select_recipients(campaign, frames, AS_OF, current, state, set())
        composer = MailComposer(campaign, current, product_lookup(frames["products"]))
        rows = selection.eligible.head(10).to_dict("records")
        # a crashed run: claimed, requested, sent, killed before marking
        crashed = ledger.claim(
            state,
            [LedgerEntry("wakeup", r["occasion_key"], r["customer_id"]) for r in rows],
            "crashed",
            "sendgrid",
            now=state_db.utcnow() - timedelta(hours=1),  # its lease ran out: the run is dead
        )
        assert len(ledger.mark_requested(state, crashed.keys, crashed.token)) == 10
        with make_sender(current) as sender:
            sender.send_batch([composer.compose(r) for r in rows])
        assert len(sink.store.messages) == 10

        report = campaign_flow(campaign="wakeup", as_of=AS_OF)
        received = _customers_in(sink)
        assert max(received.values()) == 1
        assert set(received) == set(selection.eligible["customer_id"])
        assert report.outcomes["sent_before_crash"] == 10
