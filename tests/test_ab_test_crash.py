"""Exactly once across the phases of an A/B test: a real `shopmail run` process is killed with SIGKILL
in the test phase, during the wait and in the winner phase; each rerun resumes the phase the test is
in, and at the local SendGrid server every customer got exactly one mail: the test group its variant,
everyone else the winner, the holdout nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import flows.campaign  # noqa: F401 - its run form is built now, from the shipped campaigns
from config.settings import Settings, get_settings
from segments.ab_split import in_test_group
from shopmail.campaigns import registry
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.local_loop import local_loop
from shopmail.devtools.sink_webhook import WebhookConfig
from shopmail.state import ab_tests, state_db
from tests.ab_campaigns import (
    ab_campaigns_dir,
    shipped_campaigns_afterwards,  # noqa: F401 - autouse
)
from tests.sendgrid_env import sendgrid_process_env
from tests.test_ab_test import _rates

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 27)
LEASE_S = 5
ROOT = Path(__file__).resolve().parent.parent


def _expected(settings: Settings) -> tuple[set[int], set[int], str]:
    """(eligible customers, held-out customers, test key) as the run will select them."""
    from shopmail.campaigns import get_campaign
    from shopmail.run.pipeline import select_recipients
    from shopmail.shop.extract import extract

    spec = get_campaign("news_ab")
    frames = extract(
        get_engine(settings.shop_url_resolved), spec.datasets, AS_OF, settings.tz, spec.history_days
    )
    state = state_db.upgrade(settings.state_url_resolved)
    selection = select_recipients(spec, frames, AS_OF, settings, state, set())
    keys = selection.eligible["occasion_key"].unique()
    assert len(keys) == 1
    return set(selection.eligible["customer_id"]), set(selection.holdout["customer_id"]), str(keys[0])


def _received(sink) -> list[dict[str, str]]:
    return [p["custom_args"] for m in sink.store.messages for p in m.payload["personalizations"]]


def _run(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:  # what each run said, for a failure's report
        return subprocess.Popen(
            [sys.executable, "-m", "shopmail.cli", "run", "news_ab", "--as-of", AS_OF.isoformat()],
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )


def _kill_when(process: subprocess.Popen, ready, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, f"the run ended before it could be killed {what}: {process.args}"
        assert time.monotonic() < deadline, f"the run never got {what}"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def test_sigkill_in_every_phase_still_mails_each_customer_once(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = ab_campaigns_dir(tmp_path / "campaigns", test_share=0.4, min_per_variant=200, wait_hours=0.004)
    monkeypatch.setenv("SHOPMAIL_CAMPAIGNS_DIR", str(folder))
    get_settings.cache_clear()
    registry.cache_clear()
    generate_demo_shop(settings.shop_url_resolved, customers=3500, seed=12, today=AS_OF)
    expected, held, key = _expected(get_settings())
    ids = np.array(sorted(expected))
    testers = set(ids[in_test_group("news_ab", key, ids, 0.4)].tolist())
    assert len(testers) > 600 and len(expected - testers) > 900
    state = state_db.upgrade(settings.state_url_resolved)
    log = tmp_path / "runs.log"
    webhook = WebhookConfig(delay_s=0.2, jitter_s=1.0, duplicate_rate=0.2, seed=4)

    with local_loop(settings, state, _rates(), webhook) as loop:
        loop.sink.store.set_faults(loop.sink.store.faults.__class__(slow_ms=30, rate_503=0.02, seed=3))
        env = sendgrid_process_env(
            settings,
            loop.sink.url,
            **{k: v for k, v in loop.env.items() if k.startswith("SHOPMAIL_")},
            SHOPMAIL_CAMPAIGNS_DIR=str(folder),
            SHOPMAIL_SEND_BATCH_SIZE="25",
            SHOPMAIL_CLAIM_LEASE_SECONDS=str(LEASE_S),
            SHOPMAIL_DOUBT_GRACE_MINUTES="0.05",
            SHOPMAIL_SENDGRID_RETRIES="8",
            # doubt is resolved by the webhook's proof (each kill is followed by a drain: every event of
            # an accepted mail is in before the rerun); what has no proof was never accepted
            SHOPMAIL_SENDGRID_ACTIVITY_LOOKUP="false",
        )

        # 1. killed in the test phase: a third of the test group is out
        _kill_when(
            _run(env, log), lambda: len(_received(loop.sink)) > len(testers) // 3, "into the test phase"
        )
        first = Counter(int(a["customer_id"]) for a in _received(loop.sink))
        assert set(first) <= testers and len(first) < len(testers)
        loop.drain()
        time.sleep(LEASE_S + 1)

        # 2. killed during the wait: the test group is out, the run waits for the numbers
        def waiting() -> bool:
            test = ab_tests.get_test(state, "news_ab", key)
            return test is not None and test["status"] == ab_tests.WAITING

        _kill_when(_run(env, log), waiting, "to the wait")
        assert {int(a["customer_id"]) for a in _received(loop.sink)} == testers
        loop.drain()

        # 3. killed in the winner phase
        def winner_phase() -> bool:
            return len(_received(loop.sink)) > len(testers) + 300

        _kill_when(_run(env, log), winner_phase, "into the winner phase")
        loop.drain()
        time.sleep(LEASE_S + 1)

        # 4. the last run finishes
        for _ in range(4):
            code = _run(env, log).wait(timeout=300)
            test = ab_tests.get_test(state, "news_ab", key)
            if code == 0 and test is not None and test["status"] == ab_tests.DONE:
                break
            time.sleep(LEASE_S)
        else:
            pytest.fail("no rerun finished the test")
        received = _received(loop.sink)

    customers = Counter(int(a["customer_id"]) for a in received)
    assert set(customers) == expected  # nobody lost
    assert max(customers.values()) == 1  # nobody twice, across kills and phases
    assert not set(customers) & held  # the holdout in no phase
    winner = str(test["winner"])
    by_customer = {int(a["customer_id"]): a["variant"] for a in received}
    assert all(by_customer[c] == winner for c in expected - testers)
    assert {by_customer[c] for c in testers} == {"a", "b"}
