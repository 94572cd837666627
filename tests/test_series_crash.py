"""A series through SIGKILLs: a real `shopmail run abandoned_cart` process killed mid-step (step 1, then
step 2 on the next day), against the local SendGrid server, then rerun: every step of every entry
reaches the provider exactly once, and no step is sent before its turn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, insert, select

from config.settings import Settings
from segments.holdout import in_holdout
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.shop import schema
from shopmail.state import ledger, state_db
from tests.sendgrid_env import sendgrid_process_env

pytestmark = pytest.mark.flow
DAY = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, 15, 0)
LEASE_S = 5
FAULTS = {"rate_429": 0.03, "rate_500": 0.03, "slow_ms": 120, "retry_after_s": 1, "seed": 3}


def _carts(settings: Settings) -> set[int]:
    """One abandoned cart (left at T0) for every consenting customer outside the holdout."""
    generate_demo_shop(settings.shop_url_resolved, customers=900, seed=4, today=DAY - timedelta(days=1))
    shop = get_engine(settings.shop_url_resolved)
    with shop.begin() as conn:
        ids = [
            r.id
            for r in conn.execute(
                select(schema.customers.c.id).where(
                    schema.customers.c.marketing_consent.is_(True), schema.customers.c.email.like("%@%")
                )
            )
        ]
        ids = [i for i, held in zip(ids, in_holdout("abandoned_cart", ids, 10), strict=True) if not held]
        conn.execute(delete(schema.cart_items))
        conn.execute(delete(schema.carts))
        product = conn.execute(
            select(schema.products.c.id).where(schema.products.c.in_stock.is_(True)).limit(1)
        ).scalar_one()
        conn.execute(
            insert(schema.carts), [{"id": 5000 + i, "customer_id": i, "updated_at": T0} for i in ids]
        )
        conn.execute(
            insert(schema.cart_items), [{"cart_id": 5000 + i, "product_id": product, "qty": 1} for i in ids]
        )
        later = conn.execute(  # customers who ordered after T0 leave the series: not expected
            select(schema.orders.c.customer_id).where(schema.orders.c.created_at >= T0)
        ).scalars()
    return set(ids) - set(later)


LOG = Path("/dev/null")


def _run(env: dict[str, str], day: date) -> subprocess.Popen:
    global LOG
    LOG = Path(env["SHOPMAIL_DATA_DIR"]) / f"run-{day}-{time.monotonic_ns()}.log"
    return subprocess.Popen(
        [sys.executable, "-m", "shopmail.cli", "run", "abandoned_cart", "--as-of", day.isoformat(), "--yes"],
        env={**os.environ, **env},
        stdout=LOG.open("w"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )


def _received(sink) -> Counter:
    return Counter(
        (int(p["custom_args"]["customer_id"]), p["custom_args"]["occasion"])
        for m in sink.store.messages
        for p in m.payload["personalizations"]
    )


def _kill_midway(env: dict[str, str], day: date, sink, before: int, share: int) -> None:
    run = _run(env, day)
    deadline = time.monotonic() + 240
    while sum(_received(sink).values()) < before + share:
        assert run.poll() is None, f"the run ended before it could be killed: {LOG.read_text()[-1500:]}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=30) == -signal.SIGKILL
    time.sleep(LEASE_S + 1)  # the dead run's claims expire


def _finish(env: dict[str, str], day: date, settings: Settings) -> None:
    for _ in range(6):
        code = _run(env, day).wait(timeout=300)
        counts = ledger.counts_by_status(state_db.upgrade(settings.state_url_resolved), "abandoned_cart")
        if code == 0 and not {"pending", "failed", "in_doubt"} & set(counts):
            return
        time.sleep(3)
    pytest.fail("no rerun completed")


def test_sigkill_mid_step_and_between_steps_each_step_exactly_once(
    prefect_harness, settings: Settings
) -> None:
    expected = _carts(settings)
    assert len(expected) > 150
    with running_sink() as sink:
        assert httpx.put(f"{sink.url}/sink/faults", json=FAULTS, headers=sink.auth).status_code == 200
        env = sendgrid_process_env(
            settings,
            sink.url,
            SHOPMAIL_SEND_BATCH_SIZE="10",
            SHOPMAIL_SENDGRID_RETRIES="8",
            SHOPMAIL_CLAIM_LEASE_SECONDS=str(LEASE_S),
            SHOPMAIL_DOUBT_GRACE_MINUTES="0.05",
            SHOPMAIL_UNSUBSCRIBE_SECRET="test-secret",
            SHOPMAIL_SENDER_EMAIL="news@mailings.test",
            SHOPMAIL_FREQUENCY_CAP="0",  # the caps count on the wall clock; these days pass in seconds
            SHOPMAIL_DAILY_CAP="0",
        )
        _kill_midway(env, DAY, sink, 0, len(expected) // 3)  # killed in the middle of step 1
        first = _received(sink)
        assert 0 < len(first) < len(expected)
        assert {occasion.rsplit(":", 1)[1] for _, occasion in first} == {"step1"}
        _finish(env, DAY, settings)
        _finish(env, DAY, settings)  # between steps: a run after step 1 is complete sends nothing more
        step1 = _received(sink)
        assert {cid for cid, _ in step1} == expected and max(step1.values()) == 1

        _kill_midway(env, DAY + timedelta(days=1), sink, len(expected), len(expected) // 3)  # mid step 2
        _finish(env, DAY + timedelta(days=1), settings)
        received = _received(sink)

    assert max(received.values()) == 1  # no step twice
    for step in ("step1", "step2"):
        assert {cid for cid, occasion in received if occasion.endswith(step)} == expected  # nobody lost
    assert not [o for _, o in received if o.endswith("step3")]  # step 3 is not due yet
