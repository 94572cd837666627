"""Two `shopmail run` processes started at the same moment against one state DB and the local
SendGrid server: the same campaign twice -> every mail exactly once; two marketing campaigns with
SHOPMAIL_FREQUENCY_CAP=1 -> nobody gets two. State DB (and shop) on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from config.settings import Settings, get_settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.devtools.sink_faults import Faults
from shopmail.state import state_db
from shopmail.state.schema import run_summaries, send_ledger
from tests.test_shop_databases import SERVERS, _scratch_database

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, settings: Settings, monkeypatch) -> Iterator[Settings]:
    """`settings`, for PostgreSQL with the shop and the state DB in scratch databases there (the run
    processes inherit the URLs)."""
    scratch = []
    if request.param == "postgresql":
        for var in ("SHOPMAIL_SHOP_DB_URL", "SHOPMAIL_STATE_DB_URL"):
            gen = _scratch_database(SERVERS["postgresql"])
            monkeypatch.setenv(var, next(gen))
            scratch.append(gen)
        get_settings.cache_clear()
        assert get_settings().state_url_resolved.startswith("postgresql")
    try:
        yield get_settings()
    finally:
        for gen in scratch:
            next(gen, None)


def _env(settings: Settings, sink_url: str, **extra: str) -> dict[str, str]:
    from prefect.settings import get_current_settings

    return {
        **os.environ,
        "SHOPMAIL_DATA_DIR": str(settings.data_dir),
        "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
        "SHOPMAIL_SENDGRID_HOST": sink_url,
        "SHOPMAIL_SENDGRID_API_KEY": "SG.test-key",
        "SHOPMAIL_SEND_BATCH_SIZE": "50",
        "SHOPMAIL_UNSUBSCRIBE_SECRET": "concurrent-runs-unsubscribe-secret",
        "SHOPMAIL_COUPON_SECRET": "concurrent-runs-coupon-secret",
        "SHOPMAIL_SENDER_EMAIL": "news@mailings.test",
        "PREFECT_API_URL": str(get_current_settings().api.url),
        **extra,
    }


def _distinct_runs_claiming(settings: Settings) -> int:
    """How many runs have claimed ledger rows so far (0 while the DB or its tables do not exist)."""
    try:
        engine = create_engine(settings.state_url_resolved)
        try:
            with engine.connect() as conn:
                return conn.execute(select(func.count(func.distinct(send_ledger.c.run_id)))).scalar_one()
        finally:
            engine.dispose()
    except Exception:  # noqa: BLE001 - not migrated yet, or locked for a moment by a writer
        return 0


def _run_at_once(campaigns: list[str], env: dict[str, str], settings: Settings, sink) -> None:
    """Start the runs together on a brand-new state DB (`state_db.upgrade` serializes their
    migrations). Process start-up differs by seconds on a loaded machine, so the sink answers slowly
    (and each run sends two batches at a time) until every run has claimed mails: the runs really
    overlap instead of the first finishing before the second begins."""
    sink.store.set_faults(Faults(slow_ms=1500))
    env = {**env, "SHOPMAIL_SEND_THREADS": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shopmail.cli", "run", name, "--as-of", AS_OF.isoformat(), "--yes"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for name in campaigns
    ]
    deadline = time.monotonic() + 90
    while _distinct_runs_claiming(settings) < len(campaigns) and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            break
        time.sleep(0.25)
    sink.store.set_faults(Faults())
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        said = out.decode(errors="replace")
        # 3: some of its mails were held by the other run, which sent them (the run says so in words)
        assert proc.returncode in (0, 3), said[-3000:]
        if proc.returncode == 3:
            assert "held by another run" in said, said[-3000:]


def _mails_per_customer(sink) -> Counter:
    return Counter(
        int(p["custom_args"]["customer_id"])
        for m in sink.store.messages
        for p in m.payload["personalizations"]
    )


def _summaries(settings: Settings) -> list[tuple[str, dict, dict]]:
    """(campaign, skipped by reason, details) of every run."""
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(select(run_summaries.c.campaign, run_summaries.c.details)).all()
    return [(c, (d or {}).get("skipped_by_reason", {}), d or {}) for c, d in rows]


def test_the_same_campaign_twice_at_once_sends_every_mail_exactly_once(
    prefect_harness, backend: Settings
) -> None:
    settings = backend
    generate_demo_shop(settings.shop_url_resolved, customers=3000, seed=5, today=AS_OF)
    with running_sink() as sink:
        _run_at_once(["sale", "sale"], _env(settings, sink.url), settings, sink)
        per_customer = _mails_per_customer(sink)
    assert len(per_customer) > 100
    assert max(per_customer.values()) == 1  # before the atomic claim: every mail twice
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.customer_id, send_ledger.c.status).where(send_ledger.c.campaign == "sale")
        ).all()
    runs = [(reasons, details) for campaign, reasons, details in _summaries(settings) if campaign == "sale"]
    assert len(runs) == 2
    # the race was real: both runs sent part of the audience, each skipping what the other had claimed
    assert all(details["outcomes"].get("sent", 0) > 0 for _, details in runs)
    assert sum(details["outcomes"]["sent"] for _, details in runs) == len(per_customer)
    sent = {r.customer_id for r in rows if r.status == "sent"}
    assert sent == set(per_customer)  # and none lost: every claimed mail went out
    assert {r.status for r in rows} <= {"sent", "holdout"}


def test_two_marketing_campaigns_at_once_respect_the_frequency_cap(
    prefect_harness, backend: Settings
) -> None:
    settings = backend
    generate_demo_shop(settings.shop_url_resolved, customers=3000, seed=5, today=AS_OF)
    with running_sink() as sink:
        _run_at_once(
            ["sale", "new_arrivals"], _env(settings, sink.url, SHOPMAIL_FREQUENCY_CAP="1"), settings, sink
        )
        per_customer = _mails_per_customer(sink)
    assert len(per_customer) > 100
    over = sum(1 for n in per_customer.values() if n > 1)
    assert over == 0  # before the claim-time cap: every customer in both audiences got two
    runs = _summaries(settings)
    print("sale + new_arrivals:", [(c, reasons, d.get("outcomes")) for c, reasons, d in runs])
    assert any(reasons.get("frequency_cap") for _, reasons, _ in runs)
