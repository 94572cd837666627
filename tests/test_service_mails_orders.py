"""Order status mails and the review request on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config.settings import Settings
from segments.audiences.order_status import order_status_audience, status_events, tracking_link
from segments.audiences.registry import build_audience
from segments.audiences.review_request import review_request_audience
from segments.service_window import event_window
from shopmail.campaigns import load_campaign
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import attach_customers, product_lookup

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)  # the local day is [2026-11-22 21:00, 2026-11-23 21:00) UTC
CAMPAIGNS = Path(__file__).parent.parent / "config" / "campaigns"
STATUSES = ("received", "paid", "accepted", "shipped", "delivered", "cancelled")


def _orders(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Orders as `extract` gives them: one `<status>_at` column per status; `status` is the latest."""
    records = []
    for row in rows:
        stamps = {f"{s}_at": pd.Timestamp(row[s]) if row.get(s) else pd.NaT for s in STATUSES}
        reached = [s for s in STATUSES if row.get(s)]
        records.append(
            {
                "id": row["id"],
                "customer_id": row.get("customer", 100 + row["id"]),
                "status": row.get("status", max(reached, key=lambda s: row[s])),
                "created_at": pd.Timestamp(row["received"]),
                "total": row.get("total", 1000.0),
                "currency": "RUB",
                "tracking_number": row.get("tracking"),
                **stamps,
            }
        )
    return pd.DataFrame(records)


PRODUCTS = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6],
        "name": ["Чайник", "Кружка", "Заварник", "Ложка", "Книга", "Чашка"],
        "brand": ["A", "B", "A", "C", "D", "B"],
        "category": ["kitchen", "kitchen", "kitchen", "kitchen", "books", "kitchen"],
        "price": [2000.0, 300.0, 900.0, 100.0, 500.0, 400.0],
        "url": [f"https://s/p/{i}" for i in range(1, 7)],
        "image_url": [None] * 6,
        "in_stock": [True, True, True, True, True, False],
        "overstock": [False] * 6,
    }
)


def _frames(orders: pd.DataFrame, items: list[tuple[int, int, int, float]] | None = None) -> dict:
    if items is None:
        items = [(int(o), 1, 1, 1000.0) for o in orders["id"]]
    lines = pd.DataFrame(items, columns=["order_id", "product_id", "qty", "price"])
    return {"orders": orders, "order_items": lines, "products": PRODUCTS}


def _ids(audience: pd.DataFrame) -> list[int]:
    return sorted(int(i) for i in audience["order_id"])


# --------------------------------------------------------------------------------------------
# The status rule


def test_status_event_must_fall_in_the_local_day_without_a_window() -> None:
    orders = _orders(
        [
            {"id": 1, "received": "2026-11-22 20:59:59"},  # 23:59:59 yesterday in Moscow
            {"id": 2, "received": "2026-11-22 21:00:00"},  # 00:00 today
            {"id": 3, "received": "2026-11-23 20:59:59"},  # 23:59:59 today
            {"id": 4, "received": "2026-11-23 21:00:00"},  # tomorrow
        ]
    )
    audience = order_status_audience(_frames(orders), AS_OF, MSK, status="received")
    assert _ids(audience) == [2, 3]
    assert set(audience["status"]) == {"received"}


def test_poller_window_is_half_open() -> None:
    orders = _orders(
        [
            {"id": 1, "received": "2026-11-23 08:00", "paid": "2026-11-23 09:00:00"},  # at since
            {"id": 2, "received": "2026-11-23 08:00", "paid": "2026-11-23 09:04:59"},
            {"id": 3, "received": "2026-11-23 08:00", "paid": "2026-11-23 09:05:00"},  # at until
            {"id": 4, "received": "2026-11-23 08:00", "paid": "2026-11-23 08:59:59"},  # last poll's
        ]
    )
    window = (datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 9, 5))
    audience = build_audience("order_status", _frames(orders), AS_OF, MSK, {"status": "paid"}, window=window)
    assert _ids(audience) == [1, 2]


def test_only_the_latest_status_known_at_run_time_is_mailed() -> None:
    """received, paid and accepted within one poll: only `order_accepted` goes out."""
    orders = _orders(
        [
            {
                "id": 1,
                "received": "2026-11-23 09:00",
                "paid": "2026-11-23 09:01",
                "accepted": "2026-11-23 09:03",
            },
            {"id": 2, "received": "2026-11-23 09:00", "paid": "2026-11-23 09:02"},
            # received in this window, paid after it but already in the data: superseded as well
            {"id": 3, "received": "2026-11-23 09:04", "paid": "2026-11-23 09:06"},
        ]
    )
    frames = _frames(orders)
    window = (datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 9, 5))
    by_status = {
        s: _ids(order_status_audience(frames, AS_OF, MSK, status=s, window=window))
        for s in ("received", "paid", "accepted", "shipped", "delivered")
    }
    assert by_status == {"received": [], "paid": [2], "accepted": [1], "shipped": [], "delivered": []}
    accepted = order_status_audience(frames, AS_OF, MSK, status="accepted", window=window).iloc[0]
    assert [(s["status"], s["time"], s["current"]) for s in accepted["timeline"]] == [
        ("received", "12:00", False),
        ("paid", "12:01", False),
        ("accepted", "12:03", True),
    ]


def test_cancelled_orders_get_no_status_mail() -> None:
    orders = _orders(
        [
            {"id": 1, "received": "2026-11-23 09:00", "cancelled": "2026-11-23 09:30"},  # cancelled since
            {
                "id": 2,
                "received": "2026-11-23 09:00",
                "paid": "2026-11-23 09:10",
                "cancelled": "2026-11-23 10:00",
            },
            {"id": 3, "received": "2026-11-23 09:00", "status": "cancelled"},  # status only, no history row
            {"id": 4, "received": "2026-11-23 09:00"},
        ]
    )
    frames = _frames(orders)
    assert _ids(order_status_audience(frames, AS_OF, MSK, status="received")) == [4]
    assert _ids(order_status_audience(frames, AS_OF, MSK, status="paid")) == []


def test_events_older_than_max_age_are_never_mailed() -> None:
    orders = _orders(
        [
            {"id": 1, "received": "2026-11-20 08:00", "shipped": "2026-11-22 00:00:00"},  # 36 h before until
            {"id": 2, "received": "2026-11-20 08:00", "shipped": "2026-11-21 23:59:59"},  # older
            {"id": 3, "received": "2026-11-20 08:00", "shipped": "2026-11-23 11:00:00"},
        ]
    )
    first_poll = (datetime(2020, 1, 1), datetime(2026, 11, 23, 12, 0))
    frames = _frames(orders)
    audience = order_status_audience(
        frames, AS_OF, MSK, status="shipped", window=first_poll, max_age_hours=36
    )
    assert _ids(audience) == [1, 3]
    audience = order_status_audience(frames, AS_OF, MSK, status="shipped", window=first_poll, max_age_hours=2)
    assert _ids(audience) == [3]


def test_unknown_status_is_an_error() -> None:
    orders = _orders([{"id": 1, "received": "2026-11-23 09:00"}])
    with pytest.raises(ValueError, match="status must be one of"):
        status_events(orders, "cancelled", event_window(AS_OF, MSK))


def test_order_details_lines_total_tracking_and_cross_sell() -> None:
    orders = _orders(
        [
            {"id": 1, "customer": 50, "received": "2026-11-20 09:00", "shipped": "2026-11-23 09:00",
             "tracking": " RA123456789RU ", "total": 2600.0},
            {"id": 2, "customer": 50, "received": "2026-10-01 09:00", "delivered": "2026-10-05 09:00"},
            {"id": 3, "customer": 51, "received": "2026-11-20 09:00", "shipped": "2026-11-23 10:00"},
        ]
    )  # fmt: skip
    items = [(1, 1, 1, 2000.0), (1, 2, 2, 300.0), (2, 3, 1, 900.0), (3, 5, 1, 500.0)]
    tracking = "https://www.pochta.ru/tracking#{tracking_number}"
    audience = order_status_audience(
        _frames(orders, items), AS_OF, MSK, status="shipped", tracking_url=tracking, cross_sell_limit=3
    )
    first = audience.set_index("order_id").loc[1]
    assert [(li["name"], li["qty"], li["price"], li["amount"]) for li in first["lines"]] == [
        ("Чайник", 1, 2000.0, 2000.0),
        ("Кружка", 2, 300.0, 600.0),
    ]
    assert first["item_count"] == 3 and first["order_total"] == 2600.0 and first["currency"] == "RUB"
    assert first["ordered_on"] == date(2026, 11, 20)
    assert first["tracking_number"] == "RA123456789RU"
    assert first["tracking_url"] == "https://www.pochta.ru/tracking#RA123456789RU"
    # related kitchen items in stock, not 1 and 2 (this order) nor 3 (an earlier order), not 6 (out of stock)
    # then best sellers of the last 30 days (2, 1, 5, 3, 4 by units sold) not bought yet
    assert first["products"] == [4, 5]
    second = audience.set_index("order_id").loc[3]  # a book: nothing related, best sellers only
    assert second["tracking_number"] is None and second["tracking_url"] is None
    assert second["products"] == [2, 1, 3]


def test_tracking_link_quotes_the_number() -> None:
    assert tracking_link("https://t/#{tracking_number}", "AB 1/2") == "https://t/#AB%201%2F2"
    assert tracking_link(None, "RA1") is None and tracking_link("https://t/{tracking_number}", None) is None


@pytest.mark.parametrize("status", ["received", "paid", "accepted", "shipped", "delivered"])
def test_status_campaign_files_share_the_builder_and_key(status: str) -> None:
    campaign = load_campaign(CAMPAIGNS / f"order_{status}.toml")
    assert campaign.kind == "service" and not campaign.marketing and campaign.polled
    assert campaign.audience == "order_status" and campaign.params["status"] == status
    assert campaign.occasion_key == "order:{order_id}:{status}"


def test_shipped_mail_renders_tracking_summary_and_cross_sell(settings: Settings) -> None:
    campaign = load_campaign(CAMPAIGNS / "order_shipped.toml")
    orders = _orders(
        [{"id": 7, "customer": 50, "received": "2026-11-20 09:00", "shipped": "2026-11-23 09:00",
          "tracking": "RA123456789RU", "total": 2600.0}]
    )  # fmt: skip
    frames = _frames(orders, [(7, 1, 1, 2000.0), (7, 2, 2, 300.0)])
    customers = pd.DataFrame(
        {"id": [50], "email": ["a@mail.example"], "first_name": ["Анна"], "last_name": ["Ли"],
         "language": ["ru"], "marketing_consent": [False]}
    )  # fmt: skip
    audience = build_audience(campaign.audience, frames, AS_OF, MSK, campaign.params)
    rows = attach_customers(campaign, audience, customers)
    assert rows["occasion_key"].tolist() == ["order:7:shipped"]
    composer = MailComposer(campaign, settings, product_lookup(PRODUCTS))
    ru = composer.compose(rows.iloc[0].to_dict())
    assert ru.subject == "Заказ №7 отправлен"
    assert "RA123456789RU" in ru.text and "https://www.pochta.ru/tracking#RA123456789RU" in ru.html
    assert "Кружка: 2 × 300\u00a0₽ = 600\u00a0₽" in ru.text and "Итого: 2\u00a0600\u00a0₽" in ru.text
    assert "* Передан в доставку: 23 ноября 2026, 12:00" in ru.text
    assert "utm_content=cross_sell" in ru.html and "utm_content=my_orders" in ru.text
    assert "List-Unsubscribe" not in ru.headers and "Отписаться" not in ru.text
    en = composer.compose({**rows.iloc[0].to_dict(), "language": "en"})
    assert en.subject == "Order #7 has shipped" and "Tracking number: RA123456789RU" in en.text


# --------------------------------------------------------------------------------------------
# Review request


def test_review_request_n_local_days_after_delivery_across_midnight_utc() -> None:
    orders = _orders(
        [
            # 00:30 on the 16th in Moscow: 7 days
            {"id": 1, "received": "2026-11-10 09:00", "delivered": "2026-11-15 21:30"},
            # 23:59 on the 15th: 8 days
            {"id": 2, "received": "2026-11-10 09:00", "delivered": "2026-11-15 20:59"},
            # 23:59:59 on the 16th: 7 days
            {"id": 3, "received": "2026-11-10 09:00", "delivered": "2026-11-16 20:59:59"},
            # 00:00 on the 17th: 6 days
            {"id": 4, "received": "2026-11-10 09:00", "delivered": "2026-11-16 21:00"},
            # delivered on the 16th, then returned (cancelled): no review request
            {"id": 5, "received": "2026-11-10 09:00", "delivered": "2026-11-16 10:00",
             "cancelled": "2026-11-20 10:00"},
            {"id": 6, "received": "2026-11-10 09:00", "shipped": "2026-11-16 10:00"},  # never delivered
        ]
    )  # fmt: skip
    frames = _frames(orders)
    audience = review_request_audience(frames, AS_OF, MSK)
    assert _ids(audience) == [1, 3]
    assert set(audience["delivered_on"]) == {date(2026, 11, 16)} and set(audience["days"]) == {7}
    assert _ids(review_request_audience(frames, AS_OF, MSK, days=8)) == [2]
    assert _ids(review_request_audience(frames, AS_OF, MSK, days=6)) == [4]


def test_review_request_lists_distinct_products_most_expensive_first(settings: Settings) -> None:
    campaign = load_campaign(CAMPAIGNS / "review_request.toml")
    assert campaign.kind == "service" and not campaign.marketing and not campaign.polled
    assert campaign.schedule and campaign.params["days"] == 7
    orders = _orders(
        [{"id": 9, "customer": 50, "received": "2026-11-10 09:00", "delivered": "2026-11-16 10:00"}]
    )
    frames = _frames(orders, [(9, 2, 3, 300.0), (9, 1, 1, 2000.0), (9, 4, 1, 100.0)])
    audience = build_audience(campaign.audience, frames, AS_OF, MSK, {**campaign.params, "limit": 2})
    assert audience["products"].tolist() == [[1, 2]]
    customers = pd.DataFrame(
        {"id": [50], "email": ["a@mail.example"], "first_name": [None], "last_name": [None],
         "language": ["en"], "marketing_consent": [False]}
    )  # fmt: skip
    rows = attach_customers(campaign, audience, customers)
    assert rows["occasion_key"].tolist() == ["review:order:9"]
    mail = MailComposer(campaign, settings, product_lookup(PRODUCTS)).compose(rows.iloc[0].to_dict())
    rate = "https://s/p/1?utm_source=shopmail&utm_medium=email&utm_campaign=review_request&utm_content=rate#reviews"
    assert rate in mail.text and rate.replace("&", "&amp;") in mail.html
    assert "Чайник" in mail.text and "Ложка" not in mail.text
    assert "List-Unsubscribe" not in mail.headers
