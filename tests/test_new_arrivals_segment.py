"""The new-arrivals audience on crafted data."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pandas as pd

from segments.audiences.new_arrivals import new_arrivals_audience, new_products

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 27)  # a Friday, ISO week 48


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            # 21:30 UTC on the 20th is 00:30 on the 21st in Moscow: inside the 7 local days
            "created_at": pd.to_datetime(
                [
                    "2026-11-26 10:00",
                    "2026-11-20 21:30",
                    "2026-11-20 20:30",
                    "2026-11-25 10:00",
                    "2026-11-27 08:00",
                ]
            ),
            "in_stock": [True, True, True, False, True],
        }
    )


def test_new_products_are_in_stock_within_the_local_window_newest_first() -> None:
    assert new_products(_products(), AS_OF, MSK, days=7, limit=10) == [5, 1, 2]
    assert new_products(_products(), AS_OF, MSK, days=7, limit=2) == [5, 1]


def test_everyone_gets_the_same_issue_and_nothing_when_too_little_is_new() -> None:
    customers = pd.DataFrame({"id": [10, 11, 12]})
    frames = {"products": _products(), "customers": customers}
    audience = new_arrivals_audience(frames, AS_OF, MSK, days=7, limit=6, min_products=2)
    assert audience["customer_id"].tolist() == [10, 11, 12]
    assert set(audience["issue"]) == {"2026-W48"}
    assert all(p == [5, 1, 2] for p in audience["products"])
    assert new_arrivals_audience(frames, AS_OF, MSK, days=1, min_products=2).empty
