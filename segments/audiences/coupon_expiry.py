"""Audience of the coupon-expiry reminder: unused coupons and bonuses that expire soon.

Rule: a customer's unused coupon or bonus (`used` false, `customer_id` set, `expires_at` set)
whose expiry, as a shop-local date, is `as_of + d` for some `d` in `days_before` is due a
reminder on `as_of`.

One mail per customer per run, listing every coupon due that day (soonest expiry first). Its
occasion key is `coupons:{expires_on}:d{days_left}`, taken from the soonest-expiring coupon in the
mail. The ledger key is per campaign, occasion key and customer, and `expires_on - days_left` is the
run day, so a customer gets at most one reminder per day; a rerun the same day gives the same key
(no second mail), and each coupon is mentioned once per reminder day in `days_before`.

Coupons reach the templates through the `coupon_list` column: a *tuple* of plain dicts (code, kind
"coupon" | "bonus", value, percent, expires_on, days_left, note). `MailComposer.context` maps list
columns through the product lookup; tuples pass through unchanged. `products` (a list of product
ids) holds a few in-stock best sellers to spend the coupons on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_dates
from segments.recommendations import bestsellers, popularity, ranked_catalogue

COLUMNS = ["customer_id", "expires_on", "days_left", "coupon_count", "coupon_list", "products"]


def due_coupons(coupons: pd.DataFrame, as_of: date, tz: ZoneInfo, days_before: Sequence[int]) -> pd.DataFrame:
    """Unused, owned coupons expiring on local date `as_of + d`, `d` in `days_before`.

    Adds columns expires_on (local date) and days_left.
    """
    live = coupons[
        ~coupons["used"].astype(bool) & coupons["customer_id"].notna() & coupons["expires_at"].notna()
    ]
    live = live.copy()
    live["expires_on"] = local_dates(live["expires_at"], tz)
    live["days_left"] = [(d - as_of).days for d in live["expires_on"]]
    due = live[live["days_left"].isin([int(d) for d in days_before])].copy()
    due["customer_id"] = due["customer_id"].astype(int)
    return due.sort_values(["customer_id", "expires_on", "code"])


def _coupon(row: dict[str, Any]) -> dict[str, Any]:
    note = row.get("note")
    return {
        "code": str(row["code"]),
        "kind": str(row["kind"]),
        "value": float(row["value"]),
        "percent": bool(row["percent"]),
        "expires_on": row["expires_on"],
        "days_left": int(row["days_left"]),
        "note": note if isinstance(note, str) and note else None,
    }


def coupon_expiry_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    days_before: Sequence[int] = (3,),
    bestseller_limit: int = 4,
    bestseller_window_days: int = 90,
) -> pd.DataFrame:
    """One row per customer with coupons due a reminder on `as_of` (see the module docstring).

    Columns: customer_id, expires_on and days_left (of the soonest coupon: the occasion key),
    coupon_count, coupon_list (tuple of dicts), products (best-seller ids).
    """
    due = due_coupons(frames["coupons"], as_of, tz, days_before)
    if due.empty:
        return pd.DataFrame(columns=COLUMNS)
    orders, items = frames["orders"], frames["order_items"]
    since = datetime.combine(as_of - timedelta(days=bestseller_window_days), time.min)
    top = bestsellers(
        ranked_catalogue(frames["products"], popularity(orders, items, since)), bestseller_limit
    )
    rows = []
    for customer_id, group in due.groupby("customer_id", sort=True):
        listed = tuple(_coupon(r) for r in group.to_dict("records"))
        rows.append(
            {
                "customer_id": int(customer_id),
                "expires_on": listed[0]["expires_on"],
                "days_left": listed[0]["days_left"],
                "coupon_count": len(listed),
                "coupon_list": listed,
                "products": list(top),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
