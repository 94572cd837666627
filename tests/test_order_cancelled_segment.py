"""The cancelled-order retention audience on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pandas as pd

from segments.audiences.order_cancelled import cancelled_candidates, order_cancelled_audience

MSK = ZoneInfo("Europe/Moscow")  # UTC+3: local 2026-11-22 is [2026-11-21 21:00, 2026-11-22 21:00) UTC
AS_OF = date(2026, 11, 23)


def _orders(rows: list[tuple]) -> pd.DataFrame:
    """rows: (id, customer_id, created_at, cancelled_at or None) as naive UTC strings."""
    frame = pd.DataFrame(rows, columns=["id", "customer_id", "created_at", "cancelled_at"])
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["cancelled_at"] = pd.to_datetime(frame["cancelled_at"])
    frame["status"] = ["cancelled" if pd.notna(c) else "delivered" for c in frame["cancelled_at"]]
    frame["total"] = 1000.0
    return frame


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6, 7],
            "category": ["books", "books", "books", "shoes", "shoes", "toys", "toys"],
            "brand": ["A", "B", "C", "D", "E", "F", "G"],
            "in_stock": [True, True, True, True, True, False, False],
        }
    )


def _frames(orders: pd.DataFrame, items: list[tuple]) -> dict[str, pd.DataFrame]:
    item_frame = pd.DataFrame(items, columns=["order_id", "product_id", "qty"])
    item_frame["price"] = 100.0
    return {"orders": orders, "order_items": item_frame, "products": _products()}


CASES = _orders(
    [
        # 1: cancelled on local 22 Nov, nothing since -> mailed
        (10, 1, "2026-11-20 09:00", "2026-11-22 10:00"),
        # 2: 01:00 MSK on 22 Nov (still 21 Nov in UTC) -> mailed
        (20, 2, "2026-11-20 09:00", "2026-11-21 22:00"),
        # 3: 00:30 MSK on 23 Nov (22 Nov in UTC) -> today locally: not yet
        (30, 3, "2026-11-20 09:00", "2026-11-22 21:30"),
        # 4: 23:00 MSK on 21 Nov -> two days ago: not mailed
        (40, 4, "2026-11-20 09:00", "2026-11-21 20:00"),
        # 5: cancelled, then a new order the same day -> no mail
        (50, 5, "2026-11-20 09:00", "2026-11-22 10:00"),
        (51, 5, "2026-11-22 15:00", None),
        # 6: two orders cancelled on 22 Nov -> one mail, about the later cancellation
        (60, 6, "2026-11-19 09:00", "2026-11-22 08:00"),
        (61, 6, "2026-11-18 09:00", "2026-11-22 12:00"),
        # 7: a replacement order placed before cancelling the first one -> did not leave: no mail
        (70, 7, "2026-11-20 09:00", "2026-11-22 10:00"),
        (71, 7, "2026-11-21 09:00", None),
        # 8: cancelled on 22 Nov but cancelled another order today -> tomorrow's mail, not today's
        (80, 8, "2026-11-20 09:00", "2026-11-22 10:00"),
        (81, 8, "2026-11-19 09:00", "2026-11-23 08:00"),
        # 9: an older delivered order does not matter -> mailed
        (90, 9, "2026-11-01 09:00", None),
        (91, 9, "2026-11-20 09:00", "2026-11-22 10:00"),
        # 10: an earlier cancelled order placed after this one and cancelled before it -> still mailed
        (100, 10, "2026-11-18 09:00", "2026-11-22 11:00"),
        (101, 10, "2026-11-19 09:00", "2026-11-20 09:00"),
        # 11: cancelled three days ago -> not on the default day, mailed with days=3
        (110, 11, "2026-11-18 09:00", "2026-11-20 10:00"),
    ]
)


def test_who_gets_the_mail_by_shop_local_date_and_orders_since() -> None:
    picked = cancelled_candidates(CASES, AS_OF, MSK, days=1)
    assert dict(zip(picked["customer_id"], picked["order_id"], strict=True)) == {
        1: 10,
        2: 20,
        6: 61,
        9: 91,
        10: 100,
    }
    assert set(picked["cancelled_on"]) == {date(2026, 11, 22)}
    assert picked["customer_id"].is_unique


def test_days_parameter_moves_the_cancellation_day() -> None:
    picked = cancelled_candidates(CASES, AS_OF, MSK, days=3)
    assert picked[["customer_id", "order_id"]].values.tolist() == [[11, 110]]
    assert picked["days"].tolist() == [3]


def test_no_cancellations_gives_an_empty_audience_with_the_columns() -> None:
    orders = _orders([(1, 1, "2026-11-20 09:00", None)])
    audience = order_cancelled_audience(_frames(orders, [(1, 1, 1)]), AS_OF, MSK)
    assert audience.empty
    assert {"customer_id", "order_id", "items", "products", "variant"} <= set(audience.columns)


def test_items_in_stock_and_alternatives_never_what_the_customer_has() -> None:
    orders = _orders(
        [
            (10, 1, "2026-11-20 09:00", "2026-11-22 10:00"),  # books 1 (in stock), toys 6 (sold out)
            (11, 1, "2026-10-01 09:00", None),  # already owns book 2
            (20, 2, "2026-11-20 09:00", "2026-11-22 10:00"),  # only sold-out toys
        ]
    )
    items = [(10, 1, 1), (10, 6, 1), (11, 2, 1), (20, 6, 1), (20, 7, 2)]
    audience = order_cancelled_audience(_frames(orders, items), AS_OF, MSK, alternatives_limit=3)
    rows = {r["customer_id"]: r for r in audience.to_dict("records")}

    first = rows[1]
    assert first["variant"] == "items" and first["items"] == [1]
    assert first["products"] and not {1, 2, 6} & set(first["products"])
    assert 3 in first["products"]  # the other book: same category as the cancelled one
    assert all(p in {1, 2, 3, 4, 5} for p in first["products"])  # in stock only

    second = rows[2]
    assert second["variant"] == "alternatives" and second["items"] == []
    assert len(second["products"]) == 3 and not {6, 7} & set(second["products"])
