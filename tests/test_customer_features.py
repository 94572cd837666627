"""Customer features and RFM on crafted data."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from segments.customer_features import ages, customer_features, quintile_scores, rfm_labels

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)


def _customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "email": ["a@x.example", "b@x.example", "c@x.example", "d@x.example"],
            "first_name": ["Анна", "Борис", None, "Дарья"],
            "last_name": ["А", "Б", None, "Д"],
            "gender": ["f", " M ", None, "x"],
            "birth_date": pd.to_datetime(["2000-11-23", "2000-11-24", None, "2030-01-01"]),
            "city": ["Москва", " Санкт-Петербург ", "", None],
            # 2026-11-22 21:30 UTC is 00:30 on the 23rd in Moscow: registered on the run day
            "registered_at": pd.to_datetime(
                ["2026-11-22 21:30", "2026-11-22 20:30", "2025-11-23 12:00", "2026-01-01 00:00"]
            ),
            "marketing_consent": [True, False, True, True],
            "discount_card": ["DC1", "  ", None, "DC4"],
            "language": ["ru", "EN", None, "ru"],
        }
    )


def _orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [10, 11, 12, 13, 14, 15],
            "customer_id": [1, 1, 1, 2, 2, 99],
            "status": ["delivered", "cancelled", "shipped", "delivered", "delivered", "delivered"],
            "created_at": pd.to_datetime(
                [
                    "2026-11-22 21:30",  # Moscow: 23 Nov, recency 0
                    "2026-11-01 10:00",
                    "2026-10-01 10:00",
                    "2026-08-25 10:00",
                    "2026-11-23 21:30",  # Moscow: 24 Nov, after the run day: not counted
                    "2026-11-01 10:00",  # unknown customer
                ]
            ),
            "total": [1000.0, 5000.0, 500.0, 2000.0, 9999.0, 100.0],
            "cancelled_at": pd.to_datetime([None, "2026-11-02", None, None, None, None]),
        }
    )


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [10, 10, 11, 12, 13, 14],
            "product_id": [100, 101, 102, 100, 103, 102],
            "qty": [1, 1, 1, 2, 1, 1],
            "price": [500.0, 500.0, 5000.0, 250.0, 2000.0, 9999.0],
        }
    )


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [100, 101, 102, 103],
            "brand": ["L'Oréal Paris", "Chanel", "Apple", None],
            "category": ["Косметика", "Парфюмерия", "Смартфоны", "Книги"],
            "in_stock": [True, True, True, True],
            "overstock": [False, False, False, False],
        }
    )


def _frames() -> dict[str, pd.DataFrame]:
    return {"customers": _customers(), "orders": _orders(), "order_items": _items(), "products": _products()}


def _row(features, customer_id: int) -> dict:
    table = features.table
    return table[table["customer_id"] == customer_id].iloc[0].to_dict()


def test_customer_fields_are_normalised_as_of_the_run_day() -> None:
    f = customer_features({"customers": _customers()}, AS_OF, MSK)
    t = f.table
    assert t["customer_id"].tolist() == [1, 2, 3, 4]
    assert t["gender"].tolist()[:2] == ["f", "m"] and t["gender"].isna().tolist()[2:] == [True, True]
    assert (
        t["city"].tolist()[:2] == ["Москва", "Санкт-Петербург"]
        and t["city"].isna().tolist()[2:] == [True] * 2
    )
    assert t["language"].tolist()[:2] == ["ru", "en"]
    assert t["has_card"].tolist() == [True, False, False, True]
    assert t["marketing_consent"].tolist() == [True, False, True, True]
    assert t["registered_days"].tolist() == [0, 1, 365, 326]
    assert "total_spend" not in t and f.sets == {}
    assert "total_spend" not in f.fields and "gender" in f.fields


def test_age_on_the_day_of_the_run() -> None:
    born = pd.Series(pd.to_datetime(["2000-11-23", "2000-11-24", None, "2030-01-01", "2026-11-23"]))
    assert ages(born, AS_OF).tolist() == [26, 25, pd.NA, pd.NA, 0]
    leapling = pd.Series(pd.to_datetime(["2004-02-29"]))
    assert ages(leapling, date(2027, 2, 27)).tolist() == [22]
    assert ages(leapling, date(2027, 2, 28)).tolist() == [23]  # no 29 Feb in 2027: birthday on the 28th
    assert ages(leapling, date(2028, 2, 28)).tolist() == [23]  # 2028 has a 29 Feb
    assert ages(leapling, date(2028, 2, 29)).tolist() == [24]


def test_spend_and_counts_exclude_cancelled_later_and_unknown_orders() -> None:
    f = customer_features(_frames(), AS_OF, MSK)
    one, two, three = _row(f, 1), _row(f, 2), _row(f, 3)
    assert (one["order_count"], one["total_spend"], one["cancelled_orders"]) == (2, 1500.0, 1)
    assert one["avg_order_value"] == 750.0
    assert one["first_order_at"] == pd.Timestamp("2026-10-01 10:00")
    assert one["last_order_at"] == pd.Timestamp("2026-11-22 21:30")
    assert (one["recency_days"], one["first_order_days"]) == (0, 53)
    assert (two["order_count"], two["total_spend"], two["recency_days"]) == (1, 2000.0, 90)
    assert (three["order_count"], three["total_spend"]) == (0, 0.0)
    assert pd.isna(three["recency_days"]) and pd.isna(three["avg_order_value"])
    assert pd.isna(three["last_order_at"])


def test_status_history_cancellation_counts_even_if_status_column_lags() -> None:
    frames = _frames()
    frames["orders"].loc[frames["orders"]["id"] == 12, "cancelled_at"] = pd.Timestamp("2026-10-02")
    f = customer_features(frames, AS_OF, MSK)
    assert (_row(f, 1)["order_count"], _row(f, 1)["total_spend"]) == (1, 1000.0)


def test_bought_brands_and_categories_are_distinct_and_skip_cancelled_orders() -> None:
    f = customer_features(_frames(), AS_OF, MSK)
    categories = f.set_values("categories")
    brands = f.set_values("brands")
    assert categories[0] == ["Косметика", "Парфюмерия"]  # row 0 = customer 1; Смартфоны was cancelled
    assert brands[0] == ["Chanel", "L'Oréal Paris"]
    assert categories[1] == ["Книги"]  # customer 2's Apple order is after the run day
    assert 1 not in brands.index  # the book has no brand
    assert set(categories.index) == {0, 1}


def test_quintile_edges_and_ties() -> None:
    assert quintile_scores(np.arange(10)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores(np.arange(5)).tolist() == [1, 2, 3, 4, 5]
    assert quintile_scores(np.array([7, 7, 7])).tolist() == [1, 1, 1]
    # 40 % with one order: two orders already beat 40 % of buyers -> 1 + floor(5 * 0.4) = 3
    assert quintile_scores(np.array([1, 1, 1, 1, 2, 2, 3, 4, 5, 6])).tolist() == [
        1,
        1,
        1,
        1,
        3,
        3,
        4,
        4,
        5,
        5,
    ]
    assert quintile_scores(np.array([3.5])).tolist() == [1]
    assert quintile_scores(np.array([])).tolist() == []


def test_rfm_labels_mapping() -> None:
    r = np.array([0, 5, 4, 3, 5, 4, 5, 3, 2, 1, 2, 1])
    f = np.array([0, 5, 4, 3, 1, 2, 3, 2, 3, 5, 2, 1])
    m = np.array([0, 5, 4, 1, 5, 1, 3, 5, 5, 5, 1, 1])
    assert rfm_labels(r, f, m).tolist() == [
        "no_orders",
        "champions",
        "champions",
        "loyal",
        "new",
        "promising",
        "loyal",
        "need_attention",
        "at_risk",
        "at_risk",
        "hibernating",
        "hibernating",
    ]


def test_rfm_scores_over_buyers_only_and_zero_without_orders() -> None:
    n = 10
    customers = pd.DataFrame(
        {
            "id": range(1, n + 2),
            "gender": None,
            "birth_date": pd.NaT,
            "city": None,
            "registered_at": pd.Timestamp("2026-01-01"),
            "marketing_consent": True,
            "discount_card": None,
            "language": "ru",
        }
    )
    # customer i (1..10): i orders of 1000 * i each, the last one 10 * (10 - i) days before the run day
    rows = []
    for i in range(1, n + 1):
        for k in range(i):
            day = pd.Timestamp("2026-11-23 09:00") - pd.Timedelta(days=10 * (n - i) + k)
            rows.append((len(rows) + 1, i, "delivered", day, 1000.0 * i))
    orders = pd.DataFrame(rows, columns=["id", "customer_id", "status", "created_at", "total"])
    f = customer_features({"customers": customers, "orders": orders}, AS_OF, MSK)
    t = f.table.set_index("customer_id")
    expected = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert t.loc[1:10, "r_score"].tolist() == expected
    assert t.loc[1:10, "f_score"].tolist() == expected
    assert t.loc[1:10, "m_score"].tolist() == expected
    assert t.loc[10, "rfm"] == "555" and t.loc[10, "rfm_label"] == "champions"
    assert t.loc[1, "rfm"] == "111" and t.loc[1, "rfm_label"] == "hibernating"
    assert (t.loc[11, "r_score"], t.loc[11, "f_score"], t.loc[11, "m_score"]) == (0, 0, 0)
    assert t.loc[11, "rfm"] == "000" and t.loc[11, "rfm_label"] == "no_orders"


def test_features_of_an_empty_shop() -> None:
    frames = {name: frame.iloc[0:0] for name, frame in _frames().items()}
    f = customer_features(frames, AS_OF, MSK)
    assert len(f) == 0 and len(f.sets["categories"]) == 0


@pytest.mark.parametrize("dataset", ["order_items", "products"])
def test_sets_need_items_and_products(dataset: str) -> None:
    frames = _frames()
    del frames[dataset]
    f = customer_features(frames, AS_OF, MSK)
    assert "total_spend" in f.fields and "categories" not in f.fields
