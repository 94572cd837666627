"""Arbitration across campaigns: frequency cap, priority, service exemption (segments/arbitration.py,
ledger.recent_mails, pipeline.arbitrate) and one real campaign flow run."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert, select

from config.settings import Settings
from segments.arbitration import FREQUENCY_CAP, CapRule, apply_frequency_cap, remaining_allowance
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.run.pipeline import arbitrate
from shopmail.state import ledger, state_db
from shopmail.state.schema import run_summaries, send_ledger

NOW = datetime(2026, 3, 10, 12, 0)  # naive UTC = 15:00 Moscow
DAY_START = datetime(2026, 3, 9, 21, 0)  # Moscow midnight of 2026-03-10 as naive UTC
PRIORITIES = {"birthday": 70, "abandoned_cart": 60, "wakeup": 40, "new_arrivals": 20}
RULE = CapRule(window_cap=3, window_days=7, daily_cap=1)


def _recipients(*customer_ids: int, campaign: str = "wakeup") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": list(customer_ids),
            "message_key": [f"{campaign}|occ{i}|{c}" for i, c in enumerate(customer_ids)],
        }
    )


def _history(*rows: tuple[int, str, datetime] | tuple[int, str, datetime, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "campaign": [r[1] for r in rows],
            "message_key": [r[3] if len(r) > 3 else f"old-{i}" for i, r in enumerate(rows)],
            "created_at": pd.to_datetime([r[2] for r in rows]),
        }
    )


def _cap(recipients, history, priority=40, rule=RULE):
    return apply_frequency_cap(
        recipients,
        history,
        priority=priority,
        priorities=PRIORITIES,
        now=NOW,
        day_start=DAY_START,
        rule=rule,
    )


def test_window_cap_counts_every_marketing_campaign_in_the_window() -> None:
    days = [NOW - timedelta(days=d) for d in (1, 2, 3, 8)]  # the 8-day-old mail is outside the window
    history = _history(
        (1, "new_arrivals", days[0]), (1, "new_arrivals", days[1]), (1, "wakeup", days[2]),  # 3: full
        (2, "new_arrivals", days[0]), (2, "new_arrivals", days[1]), (2, "birthday", days[3]),  # 2 + old
    )  # fmt: skip
    kept, capped = _cap(_recipients(1, 2, 3), history, priority=100)
    assert capped["customer_id"].tolist() == [1]
    assert set(capped["reason"]) == {FREQUENCY_CAP}
    assert kept["customer_id"].tolist() == [2, 3]


def test_daily_cap_only_counts_equal_or_higher_priority() -> None:
    earlier_today = DAY_START + timedelta(hours=8)
    history = _history(
        (1, "birthday", earlier_today),  # higher (70) than wakeup (40): takes the day's slot
        (2, "new_arrivals", earlier_today),  # lower (20): does not block wakeup
        (3, "wakeup", earlier_today),  # equal priority (another wake-up occasion): blocks
        (4, "birthday", DAY_START - timedelta(minutes=1)),  # yesterday (shop time): not today
    )
    kept, capped = _cap(_recipients(1, 2, 3, 4), history, priority=40)
    assert capped["customer_id"].tolist() == [1, 3]
    assert kept["customer_id"].tolist() == [2, 4]
    # the higher-priority campaign is never blocked by the lower one sent earlier the same day
    kept, capped = _cap(_recipients(2, campaign="birthday"), history, priority=70)
    assert kept["customer_id"].tolist() == [2] and capped.empty


def test_service_mails_are_not_counted() -> None:
    history = _history(*[(1, "order_shipped", NOW - timedelta(hours=h)) for h in range(1, 6)])
    kept, capped = _cap(_recipients(1), history)
    assert kept["customer_id"].tolist() == [1] and capped.empty


def test_own_occasion_rows_are_not_counted() -> None:
    recipients = _recipients(1)
    own = recipients["message_key"].iloc[0]  # e.g. a pending row left by a crash of this very mail
    history = _history((1, "wakeup", NOW - timedelta(hours=1), own))
    kept, capped = _cap(recipients, history)
    assert kept["customer_id"].tolist() == [1] and capped.empty
    # another occasion of the same campaign today does count
    history = _history((1, "wakeup", NOW - timedelta(hours=1), "wakeup|other-order|1"))
    assert _cap(recipients, history)[1]["customer_id"].tolist() == [1]


def test_the_cap_holds_within_one_run_and_zero_disables() -> None:
    recipients = _recipients(1, 1, 2)  # customer 1 has two occasions in this run
    kept, capped = _cap(recipients, _history())
    assert kept["customer_id"].tolist() == [1, 2] and capped["customer_id"].tolist() == [1]
    off = CapRule(window_cap=0, window_days=7, daily_cap=0)
    kept, capped = _cap(recipients, _history(), rule=off)
    assert len(kept) == 3 and capped.empty
    allowance = remaining_allowance(
        pd.Series([1, 2]),
        _history((1, "birthday", NOW - timedelta(days=2))),
        priority=40,
        priorities=PRIORITIES,
        now=NOW,
        day_start=DAY_START,
        rule=CapRule(window_cap=2, window_days=7, daily_cap=0),
    )
    assert allowance.tolist() == [1.0, 2.0]


# --- the ledger query -------------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path):
    return state_db.upgrade(f"sqlite:///{tmp_path / 'state.sqlite'}")


def _ledger_row(campaign: str, customer_id: int, status: str, created_at: datetime, occasion: str = "o"):
    return {
        "campaign": campaign,
        "occasion_key": occasion,
        "customer_id": customer_id,
        "message_key": ledger.message_key(campaign, occasion, customer_id),
        "status": status,
        "attempts": 1,
        "created_at": created_at,
        "updated_at": created_at,
    }


def test_recent_mails_counts_claimed_rows_of_the_given_campaigns(state) -> None:
    rows = [
        _ledger_row("birthday", 1, "sent", NOW - timedelta(hours=2)),
        _ledger_row("birthday", 2, "pending", NOW - timedelta(hours=2)),  # claimed: counts
        _ledger_row("birthday", 3, "failed", NOW - timedelta(hours=2)),
        _ledger_row("birthday", 4, "holdout", NOW - timedelta(hours=2)),
        _ledger_row("birthday", 5, "sent", NOW - timedelta(days=9)),  # before `since`
        _ledger_row("order_shipped", 1, "sent", NOW - timedelta(hours=1)),  # not asked for
        _ledger_row("wakeup", 6, "sent", NOW - timedelta(hours=1)),  # customer not asked for
    ]
    with state.begin() as conn:
        conn.execute(insert(send_ledger), rows)
    since = NOW - timedelta(days=7)
    for ids in ([1, 2, 3, 4, 5], list(range(1, 6)) + list(range(100, 3000))):  # IN query, then scan
        found = ledger.recent_mails(state, ids, ["birthday", "wakeup"], since)
        assert sorted(found["customer_id"]) == [1, 2]
        assert list(found.columns) == ["customer_id", "campaign", "message_key", "created_at"]
        assert found["created_at"].dt.hour.tolist() == [10, 10]
    assert ledger.recent_mails(state, [], ["birthday"], since).empty
    nothing = ledger.recent_mails(state, [7, 8], ["birthday"], since)  # no rows found: typed, empty
    assert nothing.empty and list(nothing.columns) == list(found.columns)


def test_arbitrate_against_the_ledger(state, settings: Settings) -> None:
    wakeup = get_campaign("wakeup")  # marketing, priority 40
    now = datetime(2026, 3, 10, 12, 0)
    with state.begin() as conn:
        conn.execute(
            insert(send_ledger),
            [
                _ledger_row("birthday", 1, "sent", now - timedelta(hours=3)),  # 70 today: capped
                _ledger_row("new_arrivals", 2, "sent", now - timedelta(hours=3)),  # 20 today: not
                _ledger_row("order_shipped", 3, "sent", now - timedelta(hours=3)),  # service: not
            ],
        )
    eligible = _recipients(1, 2, 3, 4)
    customers = pd.DataFrame({"id": [1, 2, 3, 4], "city": ["Москва", "Калининград", "Владивосток", None]})
    kept, capped = arbitrate(wakeup, eligible, customers, settings, state, now=now)
    assert capped["customer_id"].tolist() == [1] and set(capped["reason"]) == {FREQUENCY_CAP}
    assert kept["customer_id"].tolist() == [2, 3, 4]
    assert kept["local_tz"].tolist() == ["Europe/Kaliningrad", "Asia/Vladivostok", "Europe/Moscow"]


# --- one real flow run --------------------------------------------------------------------------------

AS_OF = date(2026, 11, 23)


@pytest.mark.flow
@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_lower_priority_campaign_skips_customers_mailed_by_a_higher_one_today(
    prefect_harness, settings: Settings
) -> None:
    from flows.campaign import campaign_flow
    from shopmail.devtools.demo_shop import generate_demo_shop
    from tests.shop_oracle import expected_wakeup

    generate_demo_shop(settings.shop_url_resolved, customers=2000, seed=7, today=AS_OF)
    expected = expected_wakeup(get_engine(settings.shop_url_resolved), AS_OF)  # holdout left out
    assert len(expected) >= 4
    higher, lower, service, *_ = sorted(expected)
    assert (
        get_campaign("birthday").priority
        > get_campaign("wakeup").priority
        > (get_campaign("new_arrivals").priority)
    )
    state = state_db.upgrade(settings.state_url_resolved)
    earlier = [  # what went out earlier today, as the daily schedule would have sent it
        ledger.LedgerEntry("birthday", f"birthday:{AS_OF.year}", higher),
        ledger.LedgerEntry("new_arrivals", "new_arrivals:2026-W48", lower),
        ledger.LedgerEntry("order_shipped", "order:1:shipped", service),
    ]
    claim = ledger.claim(state, earlier, "earlier-run", "outbox")
    from shopmail.mailer.base import SendResult, SendStatus

    ledger.mark(state, [SendResult(k, SendStatus.sent, "id") for k in claim.keys])

    report = campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert report.skipped.get(FREQUENCY_CAP) == 1
    with state.connect() as conn:
        wakeup_rows = {
            r.customer_id: r.status
            for r in conn.execute(select(send_ledger).where(send_ledger.c.campaign == "wakeup"))
        }
        details = conn.execute(select(run_summaries.c.details)).scalars().all()
    assert higher not in wakeup_rows  # skipped, no ledger row: it was capped, not sent
    assert wakeup_rows[lower] == "sent" and wakeup_rows[service] == "sent"
    assert any((d or {}).get("skipped_by_reason", {}).get(FREQUENCY_CAP) == 1 for d in details)
    assert report.counts()["sent"] == len(expected) - 1

    # outbox mails composed in a customer's quiet hours carry the local end of them (a whole hour)
    from email import policy
    from email.parser import BytesParser

    now = datetime.now().timestamp()
    for path in settings.outbox_path.glob("*.eml"):
        mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes(), headersonly=True)
        if mail["X-Shopmail-Send-At"] is not None:
            at = int(mail["X-Shopmail-Send-At"])
            assert now < at <= now + 24 * 3600 and at % 3600 == 0


def test_the_claim_time_cap_in_plain_python_equals_the_frame_rule() -> None:
    """`cap_mask` (the claim-time cap, no frames) keeps exactly the rows `apply_frequency_cap` keeps,
    on random candidates and histories: repeated customers, own keys in the history, old rows, rows
    of lower and higher priority campaigns, and every cap setting."""
    import random
    from datetime import datetime, timedelta

    from segments.arbitration import CapRule, apply_frequency_cap, cap_mask

    rng = random.Random(11)
    now = datetime(2026, 12, 7, 12, 0)
    day_start = datetime(2026, 12, 6, 21, 0)
    priorities = {"sale": 50, "new_arrivals": 30, "birthday": 70}
    for _ in range(300):
        rule = CapRule(rng.choice([0, 1, 2, 3]), rng.choice([1, 7]), rng.choice([0, 1, 2]))
        candidates = [(rng.randint(1, 30), f"k{i}") for i in range(rng.randint(0, 60))]
        history = [
            (
                rng.randint(1, 30),
                rng.choice([*priorities, "welcome"]),
                rng.choice([f"k{rng.randint(0, 80)}", f"h{i}"]),
                now - timedelta(hours=rng.uniform(0, 24 * 9)),
            )
            for i in range(rng.randint(0, 80))
        ]
        priority = rng.choice(list(priorities.values()))
        kwargs = {
            "priority": priority,
            "priorities": priorities,
            "now": now,
            "day_start": day_start,
            "rule": rule,
        }
        recipients = pd.DataFrame(candidates, columns=["customer_id", "message_key"])
        frame = pd.DataFrame(history, columns=["customer_id", "campaign", "message_key", "created_at"])
        kept, _ = apply_frequency_cap(recipients, frame, **kwargs)
        expected = recipients["message_key"].isin(kept["message_key"]).tolist()
        assert cap_mask(candidates, history, **kwargs) == expected
