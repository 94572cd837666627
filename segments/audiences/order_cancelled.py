"""Audience of the cancelled-order retention mail: a personal coupon to come back after a cancellation.

Rule: an order whose cancellation (status history, `cancelled_at`) falls on the shop-local date
`as_of - days` is mailed on `as_of` when
- it is the customer's most recent cancellation (at the end of `as_of`): one mail per customer and
  run, and a customer who cancels again gets the mail about the later order the day after that one;
- the customer has placed no order since: none created after the cancellation, and no other order
  that is not cancelled itself created after the cancelled one (a replacement order placed before
  cancelling the first means the customer did not leave).
Occasion key `cancelled:order:{order_id}`: one mail per cancelled order, however often the campaign
runs.

Each recipient gets `items` (the cancelled order's products still in stock: "still here for you")
and `products` (alternatives: popular in-stock products sharing a category or brand with the
cancelled items, topped up with best sellers; never what the customer already ordered). Variant
`items` when at least one cancelled item is in stock, else `alternatives`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_dates
from segments.recommendations import (
    bestsellers,
    pick_products,
    popularity,
    ranked_catalogue,
    related_products,
)

CANDIDATE_COLUMNS = ["customer_id", "order_id", "cancelled_on", "days", "order_total"]
COLUMNS = [*CANDIDATE_COLUMNS, "variant", "items", "products"]
VARIANTS = ("items", "alternatives")  # content variants (their words: shopmail/run/vocabulary.py)


def cancelled_candidates(orders: pd.DataFrame, as_of: date, tz: ZoneInfo, days: int) -> pd.DataFrame:
    """Orders cancelled on the local date `as_of - days` (see the module docstring), one per customer.

    Columns: customer_id, order_id, cancelled_on, days, order_total.
    """
    cancelled = orders.dropna(subset=["cancelled_at"])
    if cancelled.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    latest = cancelled.sort_values(["customer_id", "cancelled_at", "id"]).drop_duplicates(
        "customer_id", keep="last"
    )
    latest = latest.assign(cancelled_on=local_dates(latest["cancelled_at"], tz))
    hits = latest[latest["cancelled_on"] == as_of - timedelta(days=days)]
    if hits.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    last_order = orders.groupby("customer_id")["created_at"].max().rename("last_order_at")
    live = orders[orders["cancelled_at"].isna()]
    last_live = live.groupby("customer_id")["created_at"].max().rename("last_live_at")
    hits = hits.join(last_order, on="customer_id").join(last_live, on="customer_id")
    ordered_since = (hits["last_order_at"] > hits["cancelled_at"]) | (
        hits["last_live_at"].notna() & (hits["last_live_at"] > hits["created_at"])
    )
    hits = hits[~ordered_since]
    return (
        hits.assign(days=int(days), order_total=hits["total"].astype(float))
        .rename(columns={"id": "order_id"})[CANDIDATE_COLUMNS]
        .sort_values("customer_id")
        .reset_index(drop=True)
    )


def order_cancelled_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    days: int = 1,
    items_limit: int = 4,
    alternatives_limit: int = 4,
    bestseller_window_days: int = 90,
) -> pd.DataFrame:
    """One row per recipient: CANDIDATE_COLUMNS + variant, items, products (product id lists)."""
    orders, order_items, products = frames["orders"], frames["order_items"], frames["products"]
    audience = cancelled_candidates(orders, as_of, tz, days)
    if audience.empty:
        return pd.DataFrame(columns=COLUMNS)
    since = datetime.combine(as_of - timedelta(days=bestseller_window_days), time.min)
    catalogue = ranked_catalogue(products, popularity(orders, order_items, since))
    in_stock = set(catalogue["id"].astype(int))

    cancelled = order_items.merge(audience[["order_id"]], on="order_id")
    cancelled = cancelled.sort_values(["order_id", "price", "product_id"], ascending=[True, False, True])
    cancelled_ids = cancelled.groupby("order_id")["product_id"].agg(lambda ids: [int(i) for i in ids])
    owned = order_items.merge(orders[["id", "customer_id"]], left_on="order_id", right_on="id")
    owned = owned.merge(audience[["customer_id", "order_id"]].rename(columns={"order_id": "key"}))
    owned_ids = owned.groupby("key")["product_id"].agg(lambda ids: {int(i) for i in ids})
    related = related_products(
        cancelled[["order_id", "product_id"]].rename(columns={"order_id": "key"}),
        catalogue,
        owned[["key", "product_id"]],
        alternatives_limit,
    )
    top = bestsellers(catalogue, alternatives_limit * 4)

    items, alternatives = [], []
    for order_id in audience["order_id"].tolist():
        mine = cancelled_ids.get(order_id, [])
        items.append([p for p in mine if p in in_stock][:items_limit])
        preferred = related.get(order_id, [])
        preferred = preferred if isinstance(preferred, list) else []
        exclude = set(mine) | owned_ids.get(order_id, set())
        alternatives.append(pick_products(preferred, top, exclude, alternatives_limit))
    audience["items"] = items
    audience["products"] = alternatives
    audience["variant"] = [VARIANTS[0] if i else VARIANTS[1] for i in items]
    return audience[COLUMNS]
