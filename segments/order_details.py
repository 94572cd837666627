"""Order details for the order mails (status mails, review request): lines, status timeline,
cross-sell. Pure pandas, no Prefect.

Templates get the details as *tuples of plain dicts* (`MailComposer.context` maps list columns to
products; tuples pass through unchanged) and cross-sell / reviewed products as *lists* of product ids.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from segments.recommendations import (
    bestsellers,
    pick_products,
    popularity,
    ranked_catalogue,
    related_products,
)

HAPPY_PATH = ("received", "paid", "accepted", "shipped", "delivered")


def is_cancelled(orders: pd.DataFrame) -> pd.Series:
    """Orders cancelled at any time known to the extract (history row or current status)."""
    cancelled = orders["status"].eq("cancelled")
    if "cancelled_at" in orders.columns:
        cancelled |= orders["cancelled_at"].notna()
    return cancelled


def _local(stamps: pd.Series, tz: ZoneInfo) -> pd.Series:
    return stamps.dt.tz_localize("UTC").dt.tz_convert(tz)


def order_lines(
    order_ids: pd.Series, items: pd.DataFrame, products: pd.DataFrame
) -> dict[int, tuple[dict[str, Any], ...]]:
    """Order id -> its lines (product_id, name, url, qty, price, amount), most expensive first."""
    wanted = items[items["order_id"].isin(order_ids)]
    names = products[["id", "name", "url"]].rename(columns={"id": "product_id"})
    lines = wanted.merge(names, on="product_id", how="left")
    lines["amount"] = lines["qty"] * lines["price"]
    lines = lines.sort_values(["order_id", "amount", "product_id"], ascending=[True, False, True])
    out: dict[int, tuple[dict[str, Any], ...]] = {}
    for order_id, group in lines.groupby("order_id", sort=False):
        out[int(order_id)] = tuple(
            {
                "product_id": int(r["product_id"]),
                "name": r["name"] if isinstance(r["name"], str) else f"#{int(r['product_id'])}",
                "url": r["url"] if isinstance(r["url"], str) else None,
                "qty": int(r["qty"]),
                "price": float(r["price"]),
                "amount": float(r["amount"]),
            }
            for r in group.to_dict("records")
        )
    return out


def status_timelines(orders: pd.DataFrame, tz: ZoneInfo) -> list[tuple[dict[str, Any], ...]]:
    """Per order row, the happy-path statuses it has reached, in order, with the shop-local
    date (`on`) and time (`time`, "HH:MM"); the last one is flagged `current`."""
    columns = [s for s in HAPPY_PATH if f"{s}_at" in orders.columns]
    local = {s: _local(orders[f"{s}_at"], tz) for s in columns}
    timelines = []
    for i in range(len(orders)):
        steps = []
        for status in columns:
            at = local[status].iat[i]
            if pd.notna(at):
                steps.append({"status": status, "on": at.date(), "time": at.strftime("%H:%M")})
        if steps:
            steps[-1]["current"] = True
        timelines.append(tuple({"current": False, **s} for s in steps))
    return timelines


def cross_sell(
    orders: pd.DataFrame,
    items: pd.DataFrame,
    products: pd.DataFrame,
    selected: pd.DataFrame,
    until: datetime,
    limit: int,
    window_days: int = 30,
) -> dict[int, list[int]]:
    """Order id -> up to `limit` in-stock products related to that order (same category or brand),
    topped up with best sellers; never anything the customer has bought (in the extract).

    `selected` has columns order_id, customer_id.
    """
    if limit <= 0 or selected.empty:
        return {int(o): [] for o in selected["order_id"]}
    catalogue = ranked_catalogue(products, popularity(orders, items, until - timedelta(days=window_days)))
    bought = items.merge(selected[["order_id"]], on="order_id")[["order_id", "product_id"]]
    bought = bought.rename(columns={"order_id": "key"})
    mine = items.merge(orders[["id", "customer_id"]], left_on="order_id", right_on="id")[
        ["customer_id", "product_id"]
    ]
    owned = mine.merge(selected.rename(columns={"order_id": "key"}), on="customer_id")[["key", "product_id"]]
    related = related_products(bought, catalogue, owned, limit)
    owned_sets = owned.groupby("key")["product_id"].agg(lambda ids: {int(i) for i in ids})
    top = bestsellers(catalogue, limit + 16)
    out: dict[int, list[int]] = {}
    for order_id in selected["order_id"].tolist():
        preferred = related.get(order_id, [])
        exclude = owned_sets.get(order_id, set())
        out[int(order_id)] = pick_products(
            preferred if isinstance(preferred, list) else [], top, exclude, limit
        )
    return out
