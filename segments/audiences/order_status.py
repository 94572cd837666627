"""Audience of the order status mails (`order_received` ... `order_delivered`): one builder, the
status is a campaign parameter.

Rule for `status` (one of received, paid, accepted, shipped, delivered):

- the order's `<status>_at` (from `order_status_history`) is inside the event window: the poller's
  `[since, until)`, or the whole shop-local day `as_of` without one, and not older than
  `max_age_hours` before the window's end (`segments.service_window`);
- the order has not been cancelled (a `cancelled` history row or current status `cancelled`, at any
  time the extract knows of): a cancelled order gets no status mail at all;
- the status is not *superseded*: no later status of the happy path (received -> paid -> accepted
  -> shipped -> delivered) is known at run time, i.e. present in the extracted history. When several
  steps happen between two polls (say received, paid and accepted within five minutes) only the
  latest one is mailed (`order_accepted`); its timeline shows the earlier steps. A catch-up run after
  an outage likewise mails each order once, about its latest status.

One row per order; occasion key `order:{order_id}:{status}`. Columns: customer_id, order_id,
status, event_at, ordered_on (local date), order_total, currency, item_count, lines (tuple of
dicts: product_id, name, url, qty, price, amount), timeline (tuple of dicts: status, on, time,
current), tracking_number and tracking_url (None when the order has no tracking number),
products (cross-sell: related in-stock product ids the customer has not bought).
"""

from __future__ import annotations

from datetime import date
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pandas as pd

from config.settings import get_settings
from segments.local_time import local_dates
from segments.order_details import HAPPY_PATH, cross_sell, is_cancelled, order_lines, status_timelines
from segments.service_window import Window, event_window, in_window

COLUMNS = [
    "customer_id",
    "order_id",
    "status",
    "event_at",
    "ordered_on",
    "order_total",
    "currency",
    "item_count",
    "lines",
    "timeline",
    "tracking_number",
    "tracking_url",
    "products",
]


def status_events(orders: pd.DataFrame, status: str, window: Window) -> pd.DataFrame:
    """Orders whose `status` happened in `window`, not cancelled, not superseded (module docstring)."""
    if status not in HAPPY_PATH:
        raise ValueError(f"status must be one of {HAPPY_PATH}, got {status!r}")
    column = f"{status}_at"
    hits = orders[in_window(orders[column], window)]
    later = [f"{s}_at" for s in HAPPY_PATH[HAPPY_PATH.index(status) + 1 :] if f"{s}_at" in orders.columns]
    superseded = hits[later].notna().any(axis=1) if later else pd.Series(False, index=hits.index)
    return hits[~is_cancelled(hits) & ~superseded]


def tracking_link(template: str | None, number: object) -> str | None:
    """`template` with `{tracking_number}` filled in (URL-quoted), or None without a number."""
    if not template or not isinstance(number, str) or not number.strip():
        return None
    return template.format(tracking_number=quote(number.strip(), safe=""))


def carrier_template(carrier: object, carrier_urls: dict[str, str], fallback: str | None) -> str | None:
    """The tracking URL template of an order's carrier (case-insensitive key of SHOPMAIL_TRACKING_URLS),
    else the campaign's `tracking_url`."""
    if isinstance(carrier, str) and carrier.strip():
        wanted = carrier.strip().lower()
        for name, template in carrier_urls.items():
            if name.strip().lower() == wanted:
                return template
    return fallback


def order_status_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    status: str,
    window: Window | None = None,
    max_age_hours: float = 36,
    tracking_url: str | None = None,
    cross_sell_limit: int = 4,
    bestseller_window_days: int = 30,
    carrier_urls: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per order due the `status` mail (see the module docstring). `carrier_urls`: carrier ->
    tracking URL template (default: the SHOPMAIL_TRACKING_URLS setting) for orders with a `carrier`;
    other orders get SHOPMAIL_TRACKING_URL when it is set ('' = no link), else the campaign's
    `tracking_url`."""
    if carrier_urls is None:
        settings = get_settings()
        carrier_urls = settings.tracking_urls
        if settings.tracking_url is not None:
            tracking_url = settings.tracking_url.strip() or None
    span = event_window(as_of, tz, window, max_age_hours)
    orders, items, products = frames["orders"], frames["order_items"], frames["products"]
    hits = status_events(orders, status, span)
    if hits.empty:
        return pd.DataFrame(columns=COLUMNS)
    hits = hits.sort_values(["customer_id", "id"])
    lines = order_lines(hits["id"], items, products)
    selected = pd.DataFrame(
        {"order_id": hits["id"].astype(int), "customer_id": hits["customer_id"].astype(int)}
    )
    related = cross_sell(orders, items, products, selected, span[1], cross_sell_limit, bestseller_window_days)
    order_ids = [int(i) for i in hits["id"]]
    numbers = [n.strip() if isinstance(n, str) and n.strip() else None for n in hits["tracking_number"]]
    carriers = (
        hits["carrier"] if "carrier" in hits.columns else pd.Series(None, index=hits.index, dtype=object)
    )
    templates = [carrier_template(c, carrier_urls, tracking_url) for c in carriers]
    audience = pd.DataFrame(
        {
            "customer_id": hits["customer_id"].astype(int).to_numpy(),
            "order_id": order_ids,
            "status": status,
            "event_at": hits[f"{status}_at"].to_numpy(),
            "ordered_on": local_dates(hits["created_at"], tz).to_numpy(),
            "order_total": hits["total"].astype(float).to_numpy(),
            "currency": hits["currency"].astype(object).where(hits["currency"].notna(), None).to_numpy()
            if "currency" in hits.columns
            else None,
            "item_count": [sum(line["qty"] for line in lines.get(o, ())) for o in order_ids],
            "lines": pd.Series([lines.get(o, ()) for o in order_ids], dtype=object),
            "timeline": pd.Series(status_timelines(hits, tz), dtype=object),
            "tracking_number": pd.Series(numbers, dtype=object),
            "tracking_url": pd.Series(
                [tracking_link(t, n) for t, n in zip(templates, numbers, strict=True)], dtype=object
            ),
            "products": pd.Series([related[o] for o in order_ids], dtype=object),
        },
        columns=COLUMNS,
    )
    return audience
