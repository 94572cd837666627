"""Audience of the abandoned-cart mail: a cart left for a few hours, no order since.

Window rule (one daily run, never a cart missed, never a cart state mailed twice):

- The run on `as_of` is anchored at `send_hour` o'clock shop time on `as_of` (the hour the
  campaign's cron fires; keep the two equal). A cart qualifies when its `updated_at` is between
  `anchor - max_hours` and `anchor - min_hours` (both ends included), i.e. it has been untouched
  for at least `min_hours` and at most `max_hours` when the mail goes out.
- Consecutive daily windows overlap by `max_hours - min_hours - 24` hours (45 h by default), so
  every cart state falls into at least one run, even if a run is skipped. `max_hours - min_hours`
  must therefore be at least 24.
- The occasion key is `cart:{cart_id}:{updated_ts}` (`updated_ts` = `updated_at` as integer Unix
  seconds): the send ledger mails each cart state once, however many windows it falls into; a cart
  touched again later is a new state and can be reminded again.

A cart is skipped when its customer placed any order (whatever its status) at or after the cart's
`updated_at`, when the customer has a newer cart (only the latest cart of a customer is ever
mailed: the older one was superseded), or when none of its items is in stock. Only in-stock items
are shown and counted in `cart_total`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_to_utc

COLUMNS = ["customer_id", "cart_id", "updated_at", "updated_ts", "products", "cart_total", "units"]
EPOCH = pd.Timestamp("1970-01-01")


def run_anchor(as_of: date, tz: ZoneInfo, send_hour: int) -> datetime:
    """`send_hour` o'clock shop time on `as_of`, as naive UTC."""
    return local_to_utc(as_of, tz, time(hour=send_hour))


def cart_window(
    as_of: date, tz: ZoneInfo, send_hour: int, min_hours: float, max_hours: float
) -> tuple[datetime, datetime]:
    """The (earliest, latest) `updated_at`, naive UTC and both included, of carts mailed on `as_of`."""
    if not 0 <= send_hour <= 23:
        raise ValueError(f"send_hour must be 0..23, got {send_hour}")
    if min_hours < 0 or max_hours - min_hours < 24:
        raise ValueError(
            f"need 0 <= min_hours and max_hours - min_hours >= 24 so daily runs miss no cart; "
            f"got min_hours={min_hours}, max_hours={max_hours}"
        )
    anchor = run_anchor(as_of, tz, send_hour)
    return anchor - timedelta(hours=max_hours), anchor - timedelta(hours=min_hours)


def abandoned_carts(
    carts: pd.DataFrame, orders: pd.DataFrame, start: datetime, end: datetime
) -> pd.DataFrame:
    """Each customer's latest cart if it was updated in [start, end] and no order followed it."""
    latest = carts.sort_values(["customer_id", "updated_at", "id"]).drop_duplicates(
        "customer_id", keep="last"
    )
    hits = latest[(latest["updated_at"] >= start) & (latest["updated_at"] <= end)]
    if hits.empty or orders.empty:
        return hits
    last_order = orders.groupby("customer_id")["created_at"].max().rename("last_order_at")
    hits = hits.join(last_order, on="customer_id")
    return hits[~(hits["last_order_at"] >= hits["updated_at"])].drop(columns="last_order_at")


def abandoned_cart_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    min_hours: float = 3,
    max_hours: float = 72,
    send_hour: int = 19,
    limit: int = 6,
    window: tuple[datetime, datetime] | None = None,
) -> pd.DataFrame:
    """One row per customer with an abandoned cart (see the module docstring for the rule; a series
    gives its own `window` of `updated_at`, naive UTC, both ends included, instead of the daily one).

    Columns: customer_id, cart_id, updated_at (naive UTC), updated_ts (int Unix seconds),
    products (ids of the in-stock items, priciest line first, at most `limit`), cart_total (sum of
    qty * current price over all in-stock items), units (in-stock units).
    """
    start, end = window if window is not None else cart_window(as_of, tz, send_hour, min_hours, max_hours)
    carts = abandoned_carts(frames["carts"], frames["orders"], start, end)
    if carts.empty:
        return pd.DataFrame(columns=COLUMNS)
    products = frames["products"]
    lines = frames["cart_items"].merge(carts[["id"]].rename(columns={"id": "cart_id"}), on="cart_id")
    lines = lines.merge(
        products.loc[products["in_stock"], ["id", "price"]].rename(columns={"id": "product_id"}),
        on="product_id",
    )
    lines["line_total"] = lines["qty"] * lines["price"]
    lines = lines.sort_values(["cart_id", "line_total", "product_id"], ascending=[True, False, True])
    per_cart = lines.groupby("cart_id").agg(
        products=("product_id", lambda ids: [int(i) for i in ids][:limit]),
        cart_total=("line_total", "sum"),
        units=("qty", "sum"),
    )
    audience = carts.rename(columns={"id": "cart_id"}).join(per_cart, on="cart_id", how="inner")
    audience["updated_ts"] = ((audience["updated_at"] - EPOCH) // pd.Timedelta(seconds=1)).astype("int64")
    audience["cart_total"] = audience["cart_total"].astype(float).round(2)
    audience["units"] = audience["units"].astype(int)
    audience["cart_id"] = audience["cart_id"].astype(int)
    audience["customer_id"] = audience["customer_id"].astype(int)
    return audience.sort_values("cart_id")[COLUMNS].reset_index(drop=True)
