"""Audiences of the follow-up mails after delivery (post-sale triggers, marketing consent needed).

`followup_detailed` (default 2 days after delivery): accessories and complementary items for what was
bought in the delivered order: products frequently bought together with it first, then the best
sellers of the accessory categories of `config/accessories.toml`
(`segments.recommendations.complementary_products`). Never something the customer already has,
never out of stock. An order with fewer than `min_items` such items gets no detailed follow-up.
Occasion key `followup_detailed:order:{order_id}`.

`followup_basic` (default 4 days after delivery), only if the customer has not ordered again since
(no order placed after the delivered one, as for the wake-up mail): the same block for everyone,
the shop's best sellers (`hits`) and items to sell off (`sell_off`: in stock, flagged `overstock`),
minus what the customer already has (and the sell-off block minus what the hits block shows).
Occasion key `followup_basic:order:{order_id}`.

"N days after delivery" is counted in shop-local calendar days: an order delivered at 00:30 Moscow
time (21:30 UTC the day before) was delivered that Moscow day. Cancelled orders never qualify. A
customer gets at most one mail of each kind per run: the most recent qualifying order.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from segments.local_time import local_to_utc
from segments.recommendations import (
    bestsellers,
    complementary_products,
    frequently_bought_together,
    load_accessory_map,
    popularity,
    ranked_catalogue,
    sell_off,
    top_not_owned,
)

DETAILED_COLUMNS = ["customer_id", "order_id", "days", "delivered_on", "bought", "products"]
BASIC_COLUMNS = ["customer_id", "order_id", "days", "delivered_on", "bought", "hits", "sell_off"]


def delivered_on_day(orders: pd.DataFrame, as_of: date, tz: ZoneInfo, days: int) -> pd.DataFrame:
    """Orders (not cancelled) delivered on the shop-local day `days` days before `as_of`.

    Columns: customer_id, order_id, created_at, days, delivered_on.
    """
    day = as_of - timedelta(days=days)
    start, end = local_to_utc(day, tz), local_to_utc(day + timedelta(days=1), tz)
    delivered = orders["delivered_at"]
    hits = orders[(delivered >= start) & (delivered < end) & (orders["status"] != "cancelled")]
    return pd.DataFrame(
        {
            "customer_id": hits["customer_id"].astype(int),
            "order_id": hits["id"].astype(int),
            "created_at": hits["created_at"],
            "days": int(days),
            "delivered_on": day,
        }
    ).reset_index(drop=True)


def _latest_per_customer(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values(["customer_id", "created_at", "order_id"], kind="stable")
    return frame.drop_duplicates("customer_id", keep="last").reset_index(drop=True)


def _order_items(items: pd.DataFrame, order_ids: pd.Series) -> pd.DataFrame:
    """key (= order id), product_id of the given orders."""
    mine = items.loc[items["order_id"].isin(order_ids), ["order_id", "product_id"]]
    return mine.rename(columns={"order_id": "key"}).astype({"key": int, "product_id": int})


def _owned(orders: pd.DataFrame, items: pd.DataFrame, audience: pd.DataFrame) -> pd.DataFrame:
    """key (= the audience's order id), product_id: everything each customer ordered (not cancelled)."""
    valid = orders.loc[orders["status"] != "cancelled", ["id", "customer_id"]]
    valid = valid[valid["customer_id"].isin(audience["customer_id"])]
    owned = items[["order_id", "product_id"]].merge(valid, left_on="order_id", right_on="id")
    owned = owned.merge(audience[["customer_id", "order_id"]].rename(columns={"order_id": "key"}))
    return owned[["key", "product_id"]].drop_duplicates()


def _lists(keys: pd.Series, values: pd.Series) -> list[list[int]]:
    return [v if isinstance(v, list) else [] for v in keys.map(values)]


def _catalogue(frames: dict[str, pd.DataFrame], as_of: date, window_days: int) -> pd.DataFrame:
    since = datetime.combine(as_of - timedelta(days=window_days), time.min)
    return ranked_catalogue(frames["products"], popularity(frames["orders"], frames["order_items"], since))


def followup_detailed_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    days: int = 2,
    limit: int = 4,
    min_items: int = 2,
    min_support: int = 2,
    fbt_top_k: int = 10,
    accessories: str | Path = "config/accessories.toml",
    bestseller_window_days: int = 90,
) -> pd.DataFrame:
    """Recipients of the detailed follow-up (see the module docstring).

    `min_support`, `fbt_top_k`: frequently-bought-together pairs need that many orders (in the
    extract, cancelled excluded), top k per product; `accessories`: the accessory map file.
    Columns: customer_id, order_id, days, delivered_on, bought, products.
    """
    orders, items, products = frames["orders"], frames["order_items"], frames["products"]
    hits = delivered_on_day(orders, as_of, tz, days)
    if hits.empty:
        return pd.DataFrame(columns=DETAILED_COLUMNS)
    catalogue = _catalogue(frames, as_of, bestseller_window_days)
    fbt = frequently_bought_together(items, orders, min_support=min_support, top_k=fbt_top_k)
    bought = _order_items(items, hits["order_id"])
    picks = complementary_products(
        bought,
        products,
        catalogue,
        _owned(orders, items, hits),
        fbt,
        load_accessory_map(accessories),
        limit,
    )
    hits["products"] = _lists(hits["order_id"], picks)
    hits = hits[hits["products"].map(len) >= min_items]
    if hits.empty:
        return pd.DataFrame(columns=DETAILED_COLUMNS)
    hits = _latest_per_customer(hits)
    hits["bought"] = _lists(hits["order_id"], _id_lists_by_key(bought))
    return hits[DETAILED_COLUMNS]


def _id_lists_by_key(pairs: pd.DataFrame) -> pd.Series:
    ordered = pairs.sort_values(["key", "product_id"], kind="stable")
    return ordered.groupby("key", sort=False)["product_id"].agg(lambda ids: [int(i) for i in ids])


def no_order_since(orders: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """`hits` whose customer placed no other order after (created_at, then id) the hit's order."""
    if hits.empty:
        return hits
    ranked = orders[["customer_id", "created_at", "id"]].sort_values(["customer_id", "created_at", "id"])
    last = ranked.drop_duplicates("customer_id", keep="last").set_index("customer_id")["id"]
    latest = hits["order_id"].to_numpy() == hits["customer_id"].map(last).to_numpy()
    return hits[latest].reset_index(drop=True)


def followup_basic_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    days: int = 4,
    hits_limit: int = 4,
    sell_off_limit: int = 4,
    bestseller_window_days: int = 90,
) -> pd.DataFrame:
    """Recipients of the basic follow-up (see the module docstring).

    Columns: customer_id, order_id, days, delivered_on, bought, hits, sell_off.
    """
    orders, items = frames["orders"], frames["order_items"]
    audience = no_order_since(orders, delivered_on_day(orders, as_of, tz, days))
    if audience.empty:
        return pd.DataFrame(columns=BASIC_COLUMNS)
    audience = _latest_per_customer(audience)
    catalogue = _catalogue(frames, as_of, bestseller_window_days)
    owned = _owned(orders, items, audience)
    depth = max(hits_limit, sell_off_limit) * 4  # room for what a customer already has
    keys = audience["order_id"]
    shown = top_not_owned(keys, bestsellers(catalogue, hits_limit + depth), owned, hits_limit)
    shown_pairs = shown.explode().dropna()
    shown_pairs = pd.DataFrame({"key": shown_pairs.index, "product_id": shown_pairs.to_numpy(np.int64)})
    off = top_not_owned(
        keys,
        sell_off(catalogue, sell_off_limit + depth),
        pd.concat([owned, shown_pairs], ignore_index=True),
        sell_off_limit,
    )
    audience["hits"] = _lists(keys, shown)
    audience["sell_off"] = _lists(keys, off)
    audience["bought"] = _lists(keys, _id_lists_by_key(_order_items(items, keys)))
    return audience[BASIC_COLUMNS]
