"""The follow-up audiences after delivery (detailed and basic) on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from segments.audiences.followup import (
    delivered_on_day,
    followup_basic_audience,
    followup_detailed_audience,
    no_order_since,
)

MSK = ZoneInfo("Europe/Moscow")  # UTC+3, no DST
AS_OF = date(2026, 11, 23)


def _orders(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "customer_id", "status", "created_at", "delivered_at"])
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["delivered_at"] = pd.to_datetime(frame["delivered_at"])
    frame["total"] = 100.0
    return frame


def _items(orders: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(o, p) for o, products in orders.items() for p in products]
    frame = pd.DataFrame(rows, columns=["order_id", "product_id"])
    frame["qty"], frame["price"] = 1, 1.0
    return frame


def _products() -> pd.DataFrame:
    """1-3 phones, 4-6 cases, 7-8 chargers, 9 a book, 10 a case out of stock, 11-13 toys (overstock)."""
    return pd.DataFrame(
        {
            "id": list(range(1, 14)),
            "name": [f"p{i}" for i in range(1, 14)],
            "category": ["phones"] * 3 + ["cases"] * 3 + ["chargers"] * 2 + ["books", "cases"] + ["toys"] * 3,
            "brand": list("ABCDEFGHIJKLM"),
            "price": [100.0] * 13,
            "in_stock": [True] * 9 + [False] + [True] * 3,
            "overstock": [False] * 9 + [True, True, True, False],
        }
    )


@pytest.fixture
def accessories(tmp_path: Path) -> Path:
    path = tmp_path / "accessories.toml"
    path.write_text('[accessories]\n"phones" = ["cases", "chargers"]\n"books" = ["toys"]\n', encoding="utf-8")
    return path


# --- N days after delivery, shop-local date ----------------------------------------------------------


def test_delivery_day_is_the_shop_local_date_across_utc_midnight() -> None:
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-15 09:00", "2026-11-20 21:30"),  # 00:30 on the 21st in Moscow
            (2, 11, "delivered", "2026-11-15 09:00", "2026-11-20 20:59"),  # 23:59 on the 20th: 3 days
            (3, 12, "delivered", "2026-11-15 09:00", "2026-11-21 20:59"),  # 23:59 on the 21st
            (4, 13, "delivered", "2026-11-15 09:00", "2026-11-21 21:00"),  # 00:00 on the 22nd: 1 day
            (5, 14, "cancelled", "2026-11-15 09:00", "2026-11-21 12:00"),  # returned: never
            (6, 15, "shipped", "2026-11-15 09:00", None),
        ]
    )
    hits = delivered_on_day(orders, AS_OF, MSK, days=2)
    assert hits["order_id"].tolist() == [1, 3]
    assert set(hits["delivered_on"]) == {date(2026, 11, 21)} and set(hits["days"]) == {2}
    assert delivered_on_day(orders, AS_OF, MSK, days=3)["order_id"].tolist() == [2]
    assert delivered_on_day(orders, AS_OF, MSK, days=1)["order_id"].tolist() == [4]


# --- detailed ----------------------------------------------------------------------------------------


def _detailed_frames() -> dict[str, pd.DataFrame]:
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-15 09:00", "2026-11-21 10:00"),  # phone 1
            (2, 11, "delivered", "2026-11-15 09:00", "2026-11-21 10:00"),  # book 9: only toys 11-13
            (3, 12, "delivered", "2026-11-15 09:00", "2026-11-21 10:00"),  # case 4: no accessories, no FBT
            (4, 10, "delivered", "2026-10-01 09:00", "2026-10-04 10:00"),  # customer 10 owns case 5
            # other customers: phone 1 goes with charger 8 (3 orders) and out-of-stock case 10 (3 orders)
            (20, 30, "delivered", "2026-09-01 09:00", "2026-09-03 10:00"),
            (21, 31, "delivered", "2026-09-01 09:00", "2026-09-03 10:00"),
            (22, 32, "delivered", "2026-09-01 09:00", "2026-09-03 10:00"),
            (23, 33, "cancelled", "2026-09-01 09:00", None),
            # popularity: case 6 > case 4 > case 5; charger 7 > charger 8
            (24, 34, "delivered", "2026-11-01 09:00", "2026-11-03 10:00"),
        ]
    )
    items = _items({1: [1], 2: [9], 3: [4], 4: [5], 20: [1, 8, 10], 21: [1, 8, 10], 22: [1, 8, 10],
                    23: [1, 2], 24: [6, 4, 7]})  # fmt: skip
    items.loc[items["order_id"] == 24, "qty"] = [5, 3, 9]
    return {"orders": orders, "order_items": items, "products": _products()}


def test_detailed_offers_bought_together_then_accessories_never_owned_nor_sold_out(accessories: Path) -> None:
    frames = _detailed_frames()
    audience = followup_detailed_audience(frames, AS_OF, MSK, days=2, limit=4, accessories=accessories)
    by_order = audience.set_index("order_id")
    # order 1 (phone 1): charger 8 bought together 3 times first (case 10 too, but out of stock),
    # then accessories: best case, best charger, next case... case 5 owned by the customer
    assert by_order.loc[1, "products"] == [8, 6, 7, 4]
    assert by_order.loc[1, "bought"] == [1]
    assert by_order.loc[1, "customer_id"] == 10 and by_order.loc[1, "days"] == 2
    assert by_order.loc[1, "delivered_on"] == date(2026, 11, 21)
    # order 2 (book 9): the three toys by the accessory map
    assert sorted(by_order.loc[2, "products"]) == [11, 12, 13]
    # order 3 (case 4): nothing complementary (no FBT pair, no accessory entry for cases)
    assert 3 not in by_order.index


def test_detailed_needs_min_items_complementary_products(accessories: Path) -> None:
    frames = _detailed_frames()
    strict = followup_detailed_audience(
        frames, AS_OF, MSK, days=2, limit=4, min_items=4, accessories=accessories
    )
    assert strict["order_id"].tolist() == [1]  # order 2 has only three toys
    no_map = followup_detailed_audience(
        frames, AS_OF, MSK, days=2, accessories=accessories.parent / "missing.toml"
    )
    assert no_map.empty  # only charger 8 for order 1 (FBT): fewer than 2 items
    assert {"customer_id", "order_id", "products"} <= set(no_map.columns)


def test_detailed_one_mail_per_customer_for_the_latest_order(accessories: Path) -> None:
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-15 09:00", "2026-11-21 10:00"),
            (2, 10, "delivered", "2026-11-16 09:00", "2026-11-21 12:00"),
        ]
    )
    frames = {"orders": orders, "order_items": _items({1: [1], 2: [9]}), "products": _products()}
    audience = followup_detailed_audience(frames, AS_OF, MSK, days=2, accessories=accessories)
    assert audience["order_id"].tolist() == [2]


def test_detailed_on_a_day_without_deliveries_is_empty(accessories: Path) -> None:
    frames = _detailed_frames()
    audience = followup_detailed_audience(frames, date(2026, 12, 25), MSK, days=2, accessories=accessories)
    assert audience.empty and "products" in audience.columns


# --- basic -------------------------------------------------------------------------------------------


def _basic_frames() -> dict[str, pd.DataFrame]:
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-12 09:00", "2026-11-19 10:00"),  # 4 days, no order since
            (2, 11, "delivered", "2026-11-12 09:00", "2026-11-19 10:00"),  # ordered again after delivery
            (3, 11, "received", "2026-11-21 09:00", None),
            (4, 12, "delivered", "2026-11-12 09:00", "2026-11-19 10:00"),  # ordered again before delivery
            (5, 12, "shipped", "2026-11-14 09:00", None),
            (6, 13, "delivered", "2026-11-12 09:00", "2026-11-18 20:30"),  # 23:30 on the 18th: 5 days
            (7, 14, "delivered", "2026-11-12 09:00", "2026-11-18 21:30"),  # 00:30 on the 19th: 4 days
            (8, 15, "delivered", "2026-11-12 09:00", "2026-11-19 11:00"),  # owns best sellers and toy 11
            (9, 15, "delivered", "2025-12-01 09:00", "2025-12-03 11:00"),
            # popularity: 1 > 2 > 3 > 4 > 11 > 12 > 5 ...
            (20, 30, "delivered", "2026-11-01 09:00", "2026-11-03 10:00"),
        ]
    )
    items = _items({1: [9], 2: [9], 3: [9], 4: [9], 5: [9], 6: [9], 7: [6], 8: [1, 2], 9: [11],
                    20: [1, 2, 3, 4, 11, 12, 5]})  # fmt: skip
    items.loc[items["order_id"] == 20, "qty"] = [70, 60, 50, 40, 30, 20, 10]
    return {"orders": orders, "order_items": items, "products": _products()}


def test_basic_goes_n_local_days_after_delivery_only_without_a_new_order() -> None:
    audience = followup_basic_audience(_basic_frames(), AS_OF, MSK, days=4)
    assert sorted(audience["customer_id"]) == [10, 14, 15]
    assert set(audience["delivered_on"]) == {date(2026, 11, 19)} and set(audience["days"]) == {4}
    assert audience.set_index("customer_id").loc[14, "order_id"] == 7


def test_basic_same_block_for_everyone_minus_what_each_customer_has() -> None:
    audience = followup_basic_audience(_basic_frames(), AS_OF, MSK, days=4, hits_limit=3, sell_off_limit=2)
    by_customer = audience.set_index("customer_id")
    assert by_customer.loc[10, "hits"] == [1, 2, 3]  # best sellers
    assert by_customer.loc[10, "sell_off"] == [11, 12]  # in stock and overstock (10 is out of stock)
    assert by_customer.loc[14, "hits"] == [1, 2, 3] and by_customer.loc[14, "sell_off"] == [11, 12]
    assert by_customer.loc[10, "bought"] == [9]
    # customer 15 has products 1, 2 and 11: never shown again
    assert by_customer.loc[15, "hits"] == [3, 4, 12]
    assert by_customer.loc[15, "sell_off"] == []  # 11 owned, 12 already in the hits block


def test_no_order_since_compares_creation_times_then_ids() -> None:
    orders = _orders(
        [
            (1, 10, "delivered", "2026-11-12 09:00", "2026-11-19 10:00"),
            (2, 10, "cancelled", "2026-11-12 09:00", None),  # same instant, later id: counts as later
            (3, 11, "delivered", "2026-11-12 09:00", "2026-11-19 10:00"),
            (4, 11, "delivered", "2026-11-01 09:00", "2026-11-05 10:00"),
        ]
    )
    hits = delivered_on_day(orders, AS_OF, MSK, days=4)
    assert no_order_since(orders, hits)["order_id"].tolist() == [3]


def test_basic_on_a_day_without_deliveries_is_empty() -> None:
    audience = followup_basic_audience(_basic_frames(), date(2026, 12, 25), MSK)
    assert audience.empty and {"hits", "sell_off", "order_id"} <= set(audience.columns)
