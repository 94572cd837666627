"""The birthday audience rule and its recommendations on crafted data (no Prefect, no DB)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pandas as pd

from segments.audiences.birthday import birthday_audience, birthday_today

MSK = ZoneInfo("Europe/Moscow")


def _customers(rows: list[tuple[int, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "birth_date"])
    frame["birth_date"] = pd.to_datetime(frame["birth_date"], format="mixed")
    frame["gender"] = "f"
    return frame


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "category": ["books", "books", "books", "shoes", "shoes", "toys"],
            "brand": ["A", "B", "C", "D", "E", "F"],
            "in_stock": [True, True, True, True, True, False],
        }
    )


def _frames(customers: pd.DataFrame, orders: list[tuple] = (), items: list[tuple] = ()) -> dict:
    order_frame = pd.DataFrame(list(orders), columns=["id", "customer_id", "status", "created_at"])
    order_frame["created_at"] = pd.to_datetime(order_frame["created_at"])
    item_frame = pd.DataFrame(list(items), columns=["order_id", "product_id", "qty"])
    item_frame["price"] = 1.0
    return {"customers": customers, "orders": order_frame, "order_items": item_frame, "products": _products()}


def test_only_todays_birthdays_and_never_without_a_birth_date() -> None:
    customers = _customers(
        [
            (1, "1990-11-23"),  # today
            (2, "1985-11-24"),  # tomorrow
            (3, "1985-10-23"),  # same day, other month
            (4, None),  # unknown birth date
            (5, "2001-11-23 18:30"),  # today (a timestamp, not a date)
            (6, "2026-11-23"),  # born "today": bad data, no mail
        ]
    )
    audience = birthday_audience(_frames(customers), date(2026, 11, 23), MSK)
    assert sorted(audience["customer_id"]) == [1, 5]
    assert dict(zip(audience["customer_id"], audience["age"], strict=True)) == {1: 36, 5: 25}
    assert "birth_date" not in audience.columns


def test_29_february_is_celebrated_on_28_february_in_non_leap_years() -> None:
    born = pd.Series(pd.to_datetime(["1996-02-29", "1990-02-28", "1990-03-01", None]))
    assert birthday_today(born, date(2027, 2, 28)).tolist() == [True, True, False, False]
    assert birthday_today(born, date(2027, 3, 1)).tolist() == [False, False, True, False]
    # leap year: each on their own day
    assert birthday_today(born, date(2028, 2, 28)).tolist() == [False, True, False, False]
    assert birthday_today(born, date(2028, 2, 29)).tolist() == [True, False, False, False]
    assert birthday_today(born, date(2100, 2, 28)).tolist() == [True, True, False, False]  # 2100: not leap


def test_occasion_key_year_is_the_run_year() -> None:
    customers = _customers([(1, "1996-02-29"), (2, "1980-12-31")])
    feb = birthday_audience(_frames(customers), date(2027, 2, 28), MSK)
    assert feb["customer_id"].tolist() == [1]
    assert feb["year"].tolist() == [2027] and feb["age"].tolist() == [31]
    dec = birthday_audience(_frames(customers), date(2026, 12, 31), MSK)
    assert dec["customer_id"].tolist() == [2] and dec["year"].tolist() == [2026]


def test_no_birthday_today_gives_an_empty_audience_with_the_columns() -> None:
    audience = birthday_audience(_frames(_customers([(1, "1990-01-01")])), date(2026, 11, 23), MSK)
    assert audience.empty and {"customer_id", "year", "products"} <= set(audience.columns)


def test_recommendations_from_the_most_bought_category_else_bestsellers() -> None:
    customers = _customers([(1, "1990-11-23"), (2, "1990-11-23"), (3, "1990-11-23")])
    orders = [
        (10, 1, "delivered", "2026-10-01"),  # customer 1: books x3, shoes x1
        (11, 1, "cancelled", "2026-10-02"),  # cancelled shoes x9 do not count as a preference
        (12, 2, "delivered", "2026-10-03"),  # customer 2: shoes
        (13, 9, "delivered", "2026-10-04"),  # someone else makes shoes 5 and 4 the best sellers
    ]
    items = [(10, 1, 3), (10, 4, 1), (11, 5, 9), (12, 4, 1), (13, 5, 20), (13, 4, 10), (13, 2, 2)]
    audience = birthday_audience(
        _frames(customers, orders, items), date(2026, 11, 23), MSK, limit=3
    ).set_index("customer_id")
    # books first (bestseller 2, then 3; 1 is owned), topped up with overall bestsellers not owned
    assert audience.loc[1, "favourite_category"] == "books"
    assert audience.loc[1, "products"] == [2, 3, 5]
    assert audience.loc[2, "favourite_category"] == "shoes"
    assert audience.loc[2, "products"] == [5, 1, 2]  # shoe 4 owned
    # no orders: overall bestsellers; out-of-stock 6 never recommended
    assert audience.loc[3, "favourite_category"] == ""
    assert audience.loc[3, "products"] == [5, 4, 1]
