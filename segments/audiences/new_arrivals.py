"""Audience of the new-arrivals mail: every customer, when the shop has new in-stock products."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_to_utc


def new_products(products: pd.DataFrame, as_of: date, tz: ZoneInfo, days: int, limit: int) -> list[int]:
    """Newest in-stock products added in the `days` local days up to `as_of`."""
    start_utc = local_to_utc(as_of - timedelta(days=days - 1), tz)
    fresh = products[(products["created_at"] >= start_utc) & products["in_stock"]]
    fresh = fresh.sort_values(["created_at", "id"], ascending=[False, True])
    return fresh["id"].head(limit).astype(int).tolist()


def new_arrivals_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    days: int = 7,
    limit: int = 6,
    min_products: int = 2,
) -> pd.DataFrame:
    """One row per customer with the week's issue id and its products; empty if too little is new."""
    products = new_products(frames["products"], as_of, tz, days, limit)
    customers = frames["customers"]
    if len(products) < min_products:
        return pd.DataFrame(columns=["customer_id", "issue", "products"])
    year, week, _ = as_of.isocalendar()
    return pd.DataFrame(
        {
            "customer_id": customers["id"].to_numpy(),
            "issue": f"{year}-W{week:02d}",
            "products": [products] * len(customers),
        }
    )
