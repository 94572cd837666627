"""Random holdout groups: stable assignment, ledger `holdout` status, and the flow under Prefect."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from config.settings import Settings
from segments.holdout import holdout_bucket, in_holdout, split_holdout
from shopmail.campaigns import Campaign, get_campaign
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.mailer.outbox import outbox_file_name
from shopmail.state import ledger, state_db
from shopmail.state.ledger import LedgerEntry
from shopmail.state.schema import send_ledger
from tests.shop_oracle import expected_wakeup

AS_OF = date(2026, 11, 23)


def test_holdout_rate_is_close_to_the_percent_and_stable() -> None:
    ids = np.arange(1, 100_001)
    for percent in (5, 10, 12.5, 50):
        mask = in_holdout("wakeup", ids, percent)
        assert abs(mask.mean() * 100 - percent) < 0.6, percent
    first = in_holdout("wakeup", ids, 10)
    assert np.array_equal(first, in_holdout("wakeup", ids.copy(), 10))  # same result twice
    assert np.array_equal(first, in_holdout("wakeup", pd.Series(ids), 10))  # any container
    assert np.array_equal(first[:1000], in_holdout("wakeup", ids[:1000], 10))  # row-independent
    # nested: raising the percent only adds customers to the holdout
    assert not (first & ~in_holdout("wakeup", ids, 20)).any()


def test_holdout_differs_per_campaign_and_is_pinned_across_platforms() -> None:
    ids = np.arange(1, 100_001)
    a, b = in_holdout("wakeup", ids, 10), in_holdout("new_arrivals", ids, 10)
    assert not np.array_equal(a, b)
    assert abs((a & b).mean() - 0.01) < 0.002  # independent: 10 % of 10 %
    # fixed values: the documented hash (sha256 seed + splitmix64) must never change silently
    buckets = holdout_bucket("wakeup", [1, 42, 1000, 123456789])
    np.testing.assert_allclose(
        buckets, [73.87205417856035, 72.92769232587712, 86.9752397194013, 88.15860784788264]
    )


def test_holdout_edges_and_split() -> None:
    assert not in_holdout("wakeup", [1, 2, 3], 0).any()
    assert in_holdout("wakeup", [], 10).shape == (0,)
    with pytest.raises(ValueError):
        in_holdout("wakeup", [1], 120)
    frame = pd.DataFrame({"customer_id": range(1, 1001), "email": "x@y.ru"})
    mailed, held = split_holdout(frame, "wakeup", 10)
    assert len(mailed) + len(held) == 1000 and 50 < len(held) < 150
    assert set(mailed["customer_id"]).isdisjoint(held["customer_id"])
    assert list(held.columns) == list(frame.columns)
    none_mailed, none_held = split_holdout(frame, "wakeup", 0)
    assert len(none_mailed) == 1000 and none_held.empty and list(none_held.columns) == list(frame.columns)


def test_holdout_is_fast_on_a_million_ids() -> None:
    ids = np.arange(1, 1_000_001)
    start = time.perf_counter()
    in_holdout("wakeup", ids, 10)
    assert time.perf_counter() - start < 1.0


def test_only_marketing_campaigns_hold_out() -> None:
    base = get_campaign("order_shipped").model_dump()
    assert base["marketing"] is False
    with pytest.raises(ValueError, match="marketing campaigns only"):
        Campaign(**{**base, "holdout_percent": 10})
    with pytest.raises(ValueError):
        Campaign(**{**get_campaign("wakeup").model_dump(), "holdout_percent": 60})
    assert get_campaign("wakeup").holdout_percent == 10
    assert get_campaign("new_arrivals").holdout_percent == 5
    assert get_campaign("abandoned_cart").holdout_percent == 10


def test_ledger_holdout_rows_are_final_and_idempotent(tmp_path: Path) -> None:
    state = state_db.upgrade(f"sqlite:///{tmp_path / 'state.sqlite'}")
    entries = [LedgerEntry("wakeup", f"occ:{i}", i) for i in range(4)]
    sent = ledger.claim(state, entries[:1], "run-1", "outbox")
    assert ledger.record_holdout(state, entries[1:3], "run-1") == 2
    assert ledger.record_holdout(state, entries, "run-2") == 1  # only the unknown key 3
    statuses = ledger.statuses(state, [e.key for e in entries])
    assert statuses == {
        entries[0].key: "pending",
        entries[1].key: "holdout",
        entries[2].key: "holdout",
        entries[3].key: "holdout",
    }
    assert sent.fresh == [entries[0].key]
    assert ledger.already_done(state, [e.key for e in entries], "wakeup") == {e.key for e in entries[1:]}
    again = ledger.claim(state, entries, "run-1", "outbox")  # held-out keys are never claimed
    # the pending one is the earlier attempt's while its lease lives
    assert again.keys == [] and again.held_by_own_run == [entries[0].key]
    assert ledger.counts_by_status(state, "wakeup") == {"pending": 1, "holdout": 3}


@pytest.mark.flow
@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_flow_holds_out_on_real_runs_only_and_never_mails_them_later(
    prefect_harness, settings: Settings
) -> None:
    from flows.campaign import campaign_flow

    generate_demo_shop(settings.shop_url_resolved, customers=2000, seed=7, today=AS_OF)
    expected = set(expected_wakeup(get_engine(settings.shop_url_resolved), AS_OF, holdout=False))
    held = {c for c in expected if in_holdout("wakeup", [c], 10)[0]}
    assert held and expected - held, "the demo shop must give wakeup both groups"
    state = state_db.upgrade(settings.state_url_resolved)

    dry = campaign_flow(campaign="wakeup", as_of=AS_OF, dry_run=True)
    assert dry.holdout == len(held) and dry.eligible == len(expected - held)
    with state.connect() as conn:
        assert conn.execute(select(send_ledger)).all() == []  # dry run: nothing recorded

    report = campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert report.counts()["holdout"] == len(held) and report.counts()["sent"] == len(expected - held)
    with state.connect() as conn:
        rows = conn.execute(select(send_ledger)).all()
    assert {r.customer_id for r in rows if r.status == "holdout"} == held
    assert {r.customer_id for r in rows if r.status == "sent"} == expected - held
    assert all(r.provider_message_id is None for r in rows if r.status == "holdout")
    files = {p.name for p in settings.outbox_path.glob("*.eml")}
    assert not files & {outbox_file_name(r.message_key) for r in rows if r.status == "holdout"}
    assert len(list(settings.outbox_path.glob("*.eml"))) == len(expected - held)

    again = campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert again.counts()["sent"] == 0 and again.holdout == 0
    assert again.skipped.get("already_sent", 0) >= len(expected)  # held-out customers count as done
    with state.connect() as conn:
        assert len(conn.execute(select(send_ledger)).all()) == len(rows)
    assert len(list(settings.outbox_path.glob("*.eml"))) == len(expected - held)
