"""The abandoned-cart audience on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config.settings import Settings
from segments.audiences.abandoned_cart import abandoned_cart_audience, cart_window
from shopmail.campaigns import load_campaign
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import attach_customers, product_lookup

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)
CAMPAIGN = load_campaign(Path(__file__).parent.parent / "config" / "campaigns" / "abandoned_cart.toml")


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "name": ["Чайник", "Кружка", "Ложка", "Тарелка"],
            "brand": ["A", "B", "C", "D"],
            "category": ["kitchen"] * 4,
            "price": [1000.0, 250.0, 99.0, 500.0],
            "url": [f"https://s/p/{i}" for i in range(1, 5)],
            "image_url": [None] * 4,
            "in_stock": [True, True, False, True],
            "overstock": [False] * 4,
        }
    )


def _frames(carts: list[tuple], items: list[tuple], orders: list[tuple] = ()) -> dict[str, pd.DataFrame]:
    cart_frame = pd.DataFrame(carts, columns=["id", "customer_id", "updated_at"])
    cart_frame["updated_at"] = pd.to_datetime(cart_frame["updated_at"])
    order_frame = pd.DataFrame(list(orders), columns=["id", "customer_id", "status", "created_at"])
    order_frame["created_at"] = pd.to_datetime(order_frame["created_at"])
    return {
        "carts": cart_frame,
        "cart_items": pd.DataFrame(items, columns=["cart_id", "product_id", "qty"]),
        "orders": order_frame,
        "products": _products(),
    }


def _epoch(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp())


def test_window_is_anchored_at_the_send_hour_in_shop_time() -> None:
    # 19:00 in Moscow is 16:00 UTC: carts updated 72 h to 3 h before that
    assert cart_window(AS_OF, MSK, 19, 3, 72) == (datetime(2026, 11, 20, 16), datetime(2026, 11, 23, 13))
    # midnight in Moscow on the 23rd is 21:00 UTC on the 22nd
    assert cart_window(AS_OF, MSK, 0, 3, 72) == (datetime(2026, 11, 19, 21), datetime(2026, 11, 22, 18))
    with pytest.raises(ValueError, match="max_hours - min_hours >= 24"):
        cart_window(AS_OF, MSK, 19, 3, 20)  # daily runs would leave gaps


def test_who_gets_the_reminder() -> None:
    frames = _frames(
        carts=[
            (1, 10, "2026-11-23 12:59"),  # 3 h 01 min before 19:00 Moscow -> yes
            (2, 11, "2026-11-23 13:01"),  # 2 h 59 min: too fresh
            (3, 12, "2026-11-20 15:59"),  # 72 h 01 min: too old
            (4, 13, "2026-11-20 16:00"),  # exactly 72 h -> yes (both ends included)
            (5, 14, "2026-11-22 10:00"),  # ordered an hour later -> no
            (6, 15, "2026-11-22 10:00"),  # ordered the day before -> yes
            (7, 16, "2026-11-22 10:00"),  # only out-of-stock items -> no
            (8, 17, "2026-11-22 10:00"),  # empty cart -> no
            (9, 18, "2026-11-21 10:00"),  # superseded by the customer's newer cart 10 -> no
            (10, 18, "2026-11-23 14:00"),  # too fresh today (mailed by a later run)
            (11, 19, "2026-11-21 10:00"),  # superseded by cart 12, both in the window
            (12, 19, "2026-11-22 10:00"),  # -> only this one
        ],
        items=[
            (1, 1, 1),
            (2, 1, 1),
            (3, 1, 1),
            (4, 2, 1),
            (5, 1, 1),
            (6, 4, 1),
            (7, 3, 2),
            (9, 1, 1),
            (10, 1, 1),
            (11, 2, 1),
            (12, 4, 1),
        ],
        orders=[
            (100, 14, "received", "2026-11-22 11:00"),
            (101, 15, "delivered", "2026-11-21 10:00"),
        ],
    )
    audience = abandoned_cart_audience(frames, AS_OF, MSK)
    assert list(zip(audience["customer_id"], audience["cart_id"], strict=True)) == [
        (10, 1),
        (13, 4),
        (15, 6),
        (19, 12),
    ]
    assert audience["customer_id"].is_unique


def test_only_in_stock_items_are_shown_and_counted() -> None:
    frames = _frames(
        carts=[(1, 10, "2026-11-22 10:00")],
        items=[(1, 1, 2), (1, 2, 3), (1, 3, 5)],  # product 3 is out of stock
    )
    row = abandoned_cart_audience(frames, AS_OF, MSK).iloc[0]
    assert row["products"] == [1, 2]  # priciest line first
    assert row["cart_total"] == 2 * 1000.0 + 3 * 250.0
    assert row["units"] == 5


def test_moscow_midnight_edge() -> None:
    # send at 04:00 Moscow = 01:00 UTC; carts at least 3 h old: updated by 01:00 Moscow = 22:00 UTC (22nd)
    frames = _frames(
        carts=[
            (1, 10, "2026-11-22 21:30"),  # 00:30 Moscow on the 23rd -> yes
            (2, 11, "2026-11-22 22:30"),  # 01:30 Moscow on the 23rd -> too fresh
        ],
        items=[(1, 1, 1), (2, 1, 1)],
    )
    audience = abandoned_cart_audience(frames, AS_OF, MSK, send_hour=4, min_hours=3, max_hours=72)
    assert audience["cart_id"].tolist() == [1]


@pytest.mark.parametrize("unit", ["ns", "us"])
def test_occasion_key_is_the_cart_state(unit: str) -> None:
    frames = _frames(carts=[(7, 10, "2026-11-22 10:00:05")], items=[(7, 1, 1)])
    frames["carts"]["updated_at"] = frames["carts"]["updated_at"].astype(f"datetime64[{unit}]")
    row = abandoned_cart_audience(frames, AS_OF, MSK).iloc[0].to_dict()
    assert set(CAMPAIGN.occasion_fields) <= set(row)
    assert STATE_KEY.format(**row) == f"cart:7:{_epoch('2026-11-22 10:00:05')}"
    # the next day's run sees the same cart state: same key, so the ledger sends it once
    again = abandoned_cart_audience(frames, AS_OF + timedelta(days=1), MSK).iloc[0].to_dict()
    assert STATE_KEY.format(**again) == STATE_KEY.format(**row)
    # touched again later: a new state, a new state key; the series' entry is the cart (one per cart)
    frames["carts"].loc[0, "updated_at"] = pd.Timestamp("2026-11-23 09:00")
    touched = abandoned_cart_audience(frames, AS_OF + timedelta(days=1), MSK).iloc[0].to_dict()
    assert STATE_KEY.format(**touched) == f"cart:7:{_epoch('2026-11-23 09:00:00')}"
    assert CAMPAIGN.occasion_key.format(**touched) == CAMPAIGN.occasion_key.format(**row) == "cart:7"


# the daily window's key of one cart state (the series keys the cart itself: `cart:{cart_id}`)
STATE_KEY = "cart:{cart_id}:{updated_ts}"


@pytest.mark.parametrize("skipped_day", [None, date(2026, 11, 12)])
def test_daily_runs_miss_no_cart_and_key_each_cart_state_once(skipped_day: date | None) -> None:
    """Carts updated every 37 minutes for a week; daily runs (one possibly skipped) with a ledger."""
    stamps = pd.date_range("2026-11-08 00:00", "2026-11-15 00:00", freq="37min")
    ids = list(range(1, len(stamps) + 1))
    frames = _frames(
        carts=list(zip(ids, ids, stamps, strict=True)),  # one customer per cart
        items=[(i, 1, 1) for i in ids],
    )
    params = CAMPAIGN.params
    ledger: dict[str, date] = {}
    for day in pd.date_range("2026-11-08", "2026-11-18").date:
        if day == skipped_day:
            continue
        audience = abandoned_cart_audience(frames, day, MSK, **params)
        send_at = datetime(day.year, day.month, day.day, params["send_hour"], tzinfo=MSK)
        for row in audience.to_dict("records"):
            age = send_at - row["updated_at"].to_pydatetime().replace(tzinfo=UTC)
            assert timedelta(hours=params["min_hours"]) <= age <= timedelta(hours=params["max_hours"])
            ledger.setdefault(STATE_KEY.format(**row), day)  # the ledger sends each key once
    expected = {f"cart:{i}:{_epoch(str(s))}" for i, s in zip(ids, stamps, strict=True)}
    assert set(ledger) == expected  # every cart state reminded, exactly one key each


def test_the_template_renders_the_cart(settings: Settings) -> None:
    frames = _frames(carts=[(1, 10, "2026-11-22 10:00")], items=[(1, 1, 2), (1, 3, 1)])
    audience = abandoned_cart_audience(frames, AS_OF, MSK)
    customers = pd.DataFrame(
        {
            "id": [10],
            "email": ["a@example.com"],
            "first_name": ["Анна"],
            "last_name": ["Петрова"],
            "language": ["ru"],
            "marketing_consent": [True],
        }
    )
    row = attach_customers(CAMPAIGN, audience, customers).to_dict("records")[0]
    composer = MailComposer(CAMPAIGN, settings, product_lookup(frames["products"]))
    for language, total in (("ru", "2\u00a0000\u00a0₽"), ("en", "RUB\u00a02,000")):  # CLDR per language
        mail = composer.compose({**row, "language": language})
        assert "Анна" in mail.subject
        assert "Чайник" in mail.html and "Ложка" not in mail.html  # out of stock: not shown
        assert total in mail.text and "/cart?utm_source=" in mail.text
        assert "List-Unsubscribe" in mail.headers
