"""The wake-up audience rule and recommendations on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd

from segments.audiences.wakeup import wakeup_audience, wakeup_candidates
from segments.recommendations import popularity, ranked_catalogue, related_products

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)


def _orders(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "customer_id", "status", "created_at", "delivered_at"])
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["delivered_at"] = pd.to_datetime(frame["delivered_at"])
    frame["total"] = 100.0
    return frame


def test_candidates_use_shop_local_date_and_skip_customers_who_ordered_again() -> None:
    orders = _orders(
        [
            # delivered 2026-11-16 local (7 days): 22:30 UTC on the 15th is 01:30 on the 16th in Moscow
            (1, 10, "delivered", "2026-11-10 09:00", "2026-11-15 22:30"),
            # delivered 2026-11-09 local (14 days)
            (2, 11, "delivered", "2026-11-01 09:00", "2026-11-09 12:00"),
            # 14 days, but ordered again later -> no mail
            (3, 12, "delivered", "2026-11-01 09:00", "2026-11-09 12:00"),
            (4, 12, "received", "2026-11-20 09:00", None),
            # 8 days -> not today
            (5, 13, "delivered", "2026-11-10 09:00", "2026-11-15 12:00"),
            # 15th 20:59 UTC is 23:59 on the 15th in Moscow: 8 days, not 7
            (6, 14, "delivered", "2026-11-10 09:00", "2026-11-15 20:59"),
        ]
    )
    hits = wakeup_candidates(orders, AS_OF, MSK, days=(7, 14))
    assert sorted(zip(hits["customer_id"], hits["order_id"], hits["days"], strict=True)) == [
        (10, 1, 7),
        (11, 2, 14),
    ]


def test_one_mail_per_customer_even_with_two_qualifying_orders() -> None:
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-01 09:00", "2026-11-09 12:00"),
            (2, 10, "delivered", "2026-11-01 10:00", "2026-11-16 12:00"),
        ]
    )
    hits = wakeup_candidates(orders, AS_OF, MSK, days=(7, 14))
    assert hits["order_id"].tolist() == [2]
    assert hits["days"].tolist() == [7]


def _catalogue() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6, 7],
            "name": [f"p{i}" for i in range(1, 8)],
            "category": ["phones", "phones", "phones", "cases", "cases", "books", "phones"],
            "brand": ["A", "B", "A", "A", "C", "D", "A"],
            "price": [100.0] * 7,
            "url": [f"https://s/p/{i}" for i in range(1, 8)],
            "image_url": [None] * 7,
            "in_stock": [True, True, True, True, True, True, False],
            "overstock": [False] * 7,
        }
    )


def test_related_products_share_category_or_brand_skip_owned_and_out_of_stock() -> None:
    products = _catalogue()
    sold = pd.Series({2: 50, 3: 10, 4: 30, 5: 40, 6: 100, 7: 500})
    catalogue = ranked_catalogue(products, sold)
    bought = pd.DataFrame({"key": [100], "product_id": [1]})  # phone of brand A
    owned = pd.DataFrame({"key": [100, 100], "product_id": [1, 3]})  # also owns product 3
    related = related_products(bought, catalogue, owned, limit=3)
    ids = related.loc[100]
    assert 1 not in ids and 3 not in ids  # owned
    assert 7 not in ids  # out of stock
    assert 6 not in ids  # unrelated category and brand, however popular
    assert set(ids) == {2, 4}  # phone of brand B (category), case of brand A (brand)
    assert ids[0] == 2  # category match outranks brand match


def test_audience_variants_detailed_when_related_items_exist_basic_otherwise() -> None:
    products = _catalogue()
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-10 09:00", "2026-11-16 12:00"),  # bought a phone
            (2, 11, "delivered", "2026-11-10 09:00", "2026-11-16 12:00"),  # bought the only book
            (3, 12, "delivered", "2026-10-01 09:00", "2026-10-05 12:00"),  # popularity only
        ]
    )
    items = pd.DataFrame(
        {"order_id": [1, 2, 3, 3], "product_id": [1, 6, 5, 5], "qty": [1, 1, 3, 2], "price": [100.0] * 4}
    )
    frames = {"orders": orders, "order_items": items, "products": products}
    audience = wakeup_audience(frames, AS_OF, MSK, days=(7,), related_limit=2, min_related=2)
    by_customer = audience.set_index("customer_id")
    assert by_customer.loc[10, "variant"] == "detailed"
    assert set(by_customer.loc[10, "products"]) <= {2, 3, 4}
    assert by_customer.loc[11, "variant"] == "basic"  # no other book, brand D unique
    assert 6 not in by_customer.loc[11, "products"]  # never recommend what was bought
    assert by_customer.loc[11, "products"][0] == 5  # best seller first
    assert by_customer.loc[10, "bought"] == [1]


def test_popularity_ignores_cancelled_and_old_orders() -> None:
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-10 09:00", None),
            (2, 10, "cancelled", "2026-11-10 09:00", None),
            (3, 10, "delivered", "2025-01-10 09:00", None),
        ]
    )
    items = pd.DataFrame(
        {"order_id": [1, 2, 3], "product_id": [1, 1, 1], "qty": [2, 5, 7], "price": [1.0] * 3}
    )
    assert popularity(orders, items, datetime(2026, 8, 1)).to_dict() == {1: 2}
