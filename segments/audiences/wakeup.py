"""Audience of the wake-up mail: N days after delivery, no order since."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_dates
from segments.recommendations import bestsellers, popularity, ranked_catalogue, related_products

DETAILED, BASIC = "detailed", "basic"  # content variants (their words: shopmail/run/vocabulary.py)
VARIANTS = (DETAILED, BASIC)


def wakeup_candidates(
    orders: pd.DataFrame,
    as_of: date,
    tz: ZoneInfo,
    days: Sequence[int],
    window: tuple[datetime, datetime] | None = None,
) -> pd.DataFrame:
    """Orders delivered exactly `d` local days before `as_of` (a series: delivered inside `window`,
    naive UTC, both ends included) whose customer has not ordered since.

    One row per customer (the most recent qualifying order): customer_id, order_id, days,
    delivered_on, delivered_at.
    """
    delivered = orders.dropna(subset=["delivered_at"]).copy()
    delivered["delivered_on"] = local_dates(delivered["delivered_at"], tz)
    delivered["days"] = delivered["delivered_on"].map(lambda d: (as_of - d).days)
    if window is not None:
        at = delivered["delivered_at"]
        hits = delivered[(at >= window[0]) & (at <= window[1])]
    else:
        hits = delivered[delivered["days"].isin(list(days))]
    if hits.empty:
        return pd.DataFrame(columns=["customer_id", "order_id", "days", "delivered_on", "delivered_at"])
    latest = orders.groupby("customer_id")["created_at"].max().rename("last_order_at")
    hits = hits.join(latest, on="customer_id")
    hits = hits[hits["created_at"] >= hits["last_order_at"]]
    hits = hits.sort_values(["customer_id", "created_at", "id"]).drop_duplicates("customer_id", keep="last")
    return hits.rename(columns={"id": "order_id"})[
        ["customer_id", "order_id", "days", "delivered_on", "delivered_at"]
    ].reset_index(drop=True)


def wakeup_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    days: Sequence[int] = (7, 14),
    related_limit: int = 4,
    min_related: int = 2,
    bestseller_window_days: int = 90,
    window: tuple[datetime, datetime] | None = None,
) -> pd.DataFrame:
    """Recipients with variant `detailed` (related items) or `basic` (bestsellers).

    Columns: customer_id, order_id, days, delivered_on, variant, bought, products.
    """
    orders, items, products = frames["orders"], frames["order_items"], frames["products"]
    audience = wakeup_candidates(orders, as_of, tz, days, window)
    if audience.empty:
        return audience.assign(variant=[], bought=[], products=[])
    since = datetime.combine(as_of - timedelta(days=bestseller_window_days), time.min)
    catalogue = ranked_catalogue(products, popularity(orders, items, since))

    bought = items.merge(audience[["order_id"]], on="order_id")[["order_id", "product_id"]]
    bought = bought.rename(columns={"order_id": "key"})
    owned = items.merge(orders[["id", "customer_id"]], left_on="order_id", right_on="id")
    owned = owned.merge(audience[["customer_id", "order_id"]].rename(columns={"order_id": "key"}))
    related = related_products(bought, catalogue, owned[["key", "product_id"]], related_limit)

    audience["bought"] = audience["order_id"].map(
        bought.groupby("key")["product_id"].agg(lambda ids: [int(i) for i in ids])
    )
    audience["bought"] = audience["bought"].apply(lambda v: v if isinstance(v, list) else [])
    related_ids = audience["order_id"].map(related)
    top = bestsellers(catalogue, related_limit + 8)

    def pick(row_related: object, bought_ids: list[int]) -> tuple[str, list[int]]:
        if isinstance(row_related, list) and len(row_related) >= min_related:
            return DETAILED, row_related
        return BASIC, [p for p in top if p not in bought_ids][:related_limit]

    picked = [pick(r, b) for r, b in zip(related_ids, audience["bought"], strict=True)]
    audience["variant"] = [v for v, _ in picked]
    audience["products"] = [p for _, p in picked]
    return audience
