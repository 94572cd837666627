"""The coupon-expiry audience on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from config.settings import Settings
from segments.audiences.coupon_expiry import coupon_expiry_audience, due_coupons
from shopmail.campaigns import load_campaign
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import attach_customers, product_lookup

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)  # + 3 days = 2026-11-26
CAMPAIGN = load_campaign(Path(__file__).parent.parent / "config" / "campaigns" / "coupon_expiry.toml")


def _coupons(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["code", "customer_id", "kind", "value", "percent", "expires_at", "used"]
    )
    frame["expires_at"] = pd.to_datetime(frame["expires_at"])
    frame["note"] = None
    return frame


def _frames(coupons: pd.DataFrame) -> dict[str, pd.DataFrame]:
    products = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["Чайник", "Кружка", "Ложка"],
            "brand": ["A", "B", "C"],
            "category": ["kitchen"] * 3,
            "price": [1000.0, 250.0, 99.0],
            "url": [f"https://s/p/{i}" for i in range(1, 4)],
            "image_url": [None] * 3,
            "in_stock": [True, True, False],
            "overstock": [False] * 3,
        }
    )
    orders = pd.DataFrame(
        {
            "id": [1, 2],
            "customer_id": [50, 51],
            "status": ["delivered", "delivered"],
            "created_at": pd.to_datetime(["2026-11-01 10:00", "2026-11-02 10:00"]),
        }
    )
    items = pd.DataFrame(
        {"order_id": [1, 2, 2], "product_id": [2, 2, 3], "qty": [1, 1, 9], "price": [250.0, 250.0, 99.0]}
    )
    return {"coupons": coupons, "products": products, "orders": orders, "order_items": items}


SAMPLE = [
    ("A1", 10, "coupon", 500.0, False, "2026-11-26 20:59:59", False),  # 23:59:59 Moscow on the 26th -> yes
    ("B1", 11, "coupon", 10.0, True, "2026-11-25 21:30:00", False),  # 00:30 Moscow on the 26th -> yes
    ("C1", 12, "coupon", 10.0, True, "2026-11-26 21:00:00", False),  # 00:00 Moscow on the 27th -> no
    ("D1", 13, "coupon", 300.0, False, "2026-11-26 12:00:00", True),  # used -> no
    ("E1", 14, "coupon", 300.0, False, "2026-11-27 12:00:00", False),  # in 4 days -> no
    ("E2", 14, "bonus", 300.0, False, "2026-11-25 12:00:00", False),  # in 2 days -> no
    ("G1", None, "coupon", 300.0, False, "2026-11-26 12:00:00", False),  # nobody's -> no
    ("H1", 16, "coupon", 300.0, False, None, False),  # never expires -> no
    ("F3", 15, "coupon", 15.0, True, "2026-11-26 09:00:00", False),
    ("F1", 15, "bonus", 1200.0, False, "2026-11-26 20:59:59", False),
    ("F2", 15, "coupon", 1000.0, False, "2026-11-26 10:00:00", False),
    ("F4", 15, "coupon", 1000.0, False, "2026-11-26 10:00:00", True),  # used -> not listed
]


def test_unused_coupons_expiring_on_the_local_date() -> None:
    due = due_coupons(_coupons(SAMPLE), AS_OF, MSK, days_before=[3])
    assert due["code"].tolist() == ["A1", "B1", "F1", "F2", "F3"]
    assert set(due["expires_on"]) == {date(2026, 11, 26)}
    assert set(due["days_left"]) == {3}


def test_one_mail_per_customer_listing_all_coupons() -> None:
    audience = coupon_expiry_audience(_frames(_coupons(SAMPLE)), AS_OF, MSK)
    assert audience["customer_id"].tolist() == [10, 11, 15]
    several = audience.set_index("customer_id").loc[15]
    assert several["coupon_count"] == 3
    assert isinstance(several["coupon_list"], tuple)  # not a list: the composer leaves it alone
    assert [c["code"] for c in several["coupon_list"]] == ["F1", "F2", "F3"]
    assert several["coupon_list"][0] == {
        "code": "F1",
        "kind": "bonus",
        "value": 1200.0,
        "percent": False,
        "expires_on": date(2026, 11, 26),
        "days_left": 3,
        "note": None,
    }
    assert all(type(c["value"]) is float and type(c["percent"]) is bool for c in several["coupon_list"])
    # best sellers, in stock only (product 3 sold most but is out of stock)
    assert all(p == [2, 1] for p in audience["products"])


def test_occasion_keys_are_stable_and_one_per_customer_and_day() -> None:
    coupons = _coupons(
        [
            ("S1", 20, "coupon", 5.0, True, "2026-11-24 12:00", False),  # tomorrow
            ("S2", 20, "coupon", 5.0, True, "2026-11-26 12:00", False),  # in 3 days
            ("S3", 21, "bonus", 100.0, False, "2026-11-26 12:00", False),
        ]
    )
    frames = _frames(coupons)

    def keys(day: date) -> dict[int, str]:
        audience = coupon_expiry_audience(frames, day, MSK, days_before=[3, 1])
        return {r["customer_id"]: CAMPAIGN.occasion_key.format(**r) for r in audience.to_dict("records")}

    today = keys(AS_OF)
    # customer 20: one mail for both coupons, keyed by the soonest one
    assert today == {20: "coupons:2026-11-24:d1", 21: "coupons:2026-11-26:d3"}
    assert keys(AS_OF) == today  # a rerun gives the same keys: the ledger sends nothing twice
    # two days later both coupons expiring on the 26th get their 1-day reminder under a new key
    assert keys(AS_OF + timedelta(days=2)) == {20: "coupons:2026-11-26:d1", 21: "coupons:2026-11-26:d1"}
    assert keys(AS_OF + timedelta(days=1)) == {}
    audience = coupon_expiry_audience(frames, AS_OF, MSK, days_before=[3, 1]).set_index("customer_id")
    assert [(c["code"], c["days_left"]) for c in audience.loc[20, "coupon_list"]] == [("S1", 1), ("S2", 3)]


def test_no_coupons_due_gives_an_empty_audience_with_the_key_columns() -> None:
    audience = coupon_expiry_audience(_frames(_coupons(SAMPLE)), AS_OF, MSK, days_before=[30])
    assert audience.empty
    assert set(CAMPAIGN.occasion_fields) <= set(audience.columns)


def test_the_template_gets_the_coupons_and_products(settings: Settings) -> None:
    frames = _frames(_coupons(SAMPLE))
    audience = coupon_expiry_audience(frames, AS_OF, MSK)
    customers = pd.DataFrame(
        {
            "id": [10, 11, 15],
            "email": ["a@example.com", "b@example.com", "c@example.com"],
            "first_name": ["Анна", "", "Олег"],
            "last_name": ["Петрова", "", "Иванов"],
            "language": ["ru", "en", "ru"],
            "marketing_consent": [True, True, True],
        }
    )
    rows = attach_customers(CAMPAIGN, audience, customers).set_index("customer_id", drop=False)
    composer = MailComposer(CAMPAIGN, settings, product_lookup(frames["products"]))
    context = composer.context(rows.loc[15].to_dict())
    assert context["coupon_list"] == rows.loc[15, "coupon_list"]  # passed through unchanged
    assert [p["name"] for p in context["products"]] == ["Кружка", "Чайник"]
    for language, money in (("ru", "1\u00a0200\u00a0₽"), ("en", "RUB\u00a01,200")):  # CLDR per language
        several = composer.compose({**rows.loc[15].to_dict(), "language": language})
        assert "F2" in several.text and "15%" in several.text and money in several.text
        assert "Кружка" in several.html and "List-Unsubscribe" in several.headers
        one = composer.compose({**rows.loc[11].to_dict(), "language": language})
        assert "B1" in one.html and "10%" in one.html
    assert (
        composer.compose(rows.loc[15].to_dict()).subject == "Олег, ваши купоны и бонусы сгорают через 3 дня"
    )
    assert composer.compose(rows.loc[11].to_dict()).subject == "Your coupon expires in 3 days"
