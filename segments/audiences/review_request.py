"""Audience of the review request: N days after delivery, ask to rate what was bought.

Rule: an order delivered on the shop-local date `as_of - days` (from its `delivered` history row)
and never cancelled (a `cancelled` row or current status, e.g. a return) is due the mail on
`as_of`. A daily run (not polled); one mail per order, occasion key `review:order:{order_id}`.

Columns: customer_id, order_id, days, delivered_on, ordered_on, products (the distinct products of
the order as a *list* of ids, so the templates get product dicts with name, url and image; most
expensive line first, at most `limit`).
"""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_dates
from segments.order_details import is_cancelled

COLUMNS = ["customer_id", "order_id", "days", "delivered_on", "ordered_on", "products"]


def delivered_orders(orders: pd.DataFrame, as_of: date, tz: ZoneInfo, days: int) -> pd.DataFrame:
    """Orders delivered on local date `as_of - days`, not cancelled."""
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    delivered = orders[orders["delivered_at"].notna() & ~is_cancelled(orders)]
    on = local_dates(delivered["delivered_at"], tz)
    return delivered[on == as_of - timedelta(days=days)]


def review_request_audience(
    frames: dict[str, pd.DataFrame], as_of: date, tz: ZoneInfo, days: int = 7, limit: int = 6
) -> pd.DataFrame:
    """One row per order due a review request on `as_of` (see the module docstring)."""
    hits = delivered_orders(frames["orders"], as_of, tz, days)
    if hits.empty:
        return pd.DataFrame(columns=COLUMNS)
    items = frames["order_items"]
    lines = items[items["order_id"].isin(hits["id"])].assign(amount=lambda f: f["qty"] * f["price"])
    lines = lines.sort_values(["order_id", "amount", "product_id"], ascending=[True, False, True])
    bought = lines.groupby("order_id")["product_id"].agg(lambda ids: list(dict.fromkeys(int(i) for i in ids)))
    hits = hits.sort_values(["customer_id", "id"])
    products = [bought.get(o, [])[:limit] for o in hits["id"]]
    audience = pd.DataFrame(
        {
            "customer_id": hits["customer_id"].astype(int).to_numpy(),
            "order_id": hits["id"].astype(int).to_numpy(),
            "days": int(days),
            "delivered_on": local_dates(hits["delivered_at"], tz).to_numpy(),
            "ordered_on": local_dates(hits["created_at"], tz).to_numpy(),
            "products": pd.Series(products, dtype=object),
        },
        columns=COLUMNS,
    )
    return audience[audience["products"].map(len) > 0].reset_index(drop=True)
