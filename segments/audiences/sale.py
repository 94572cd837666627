"""Audience of the sale announcement: every customer (the marketer narrows it with a segment).

The sale is described by the campaign's params: `sale_id` (occasion key `sale:{sale_id}`: one mail per
customer per sale, however many runs and segments), the headline and discount text in Russian and
English, and `ends_on` (last day of the sale, shop-local). Nothing is sent once the sale is over
(`as_of` after `ends_on`). The mail shows the sale's products: in-stock overstock / sell-off items,
most popular first (units sold in the last `popularity_window_days`, cancelled orders excluded),
optionally only of some `categories`; `limit` of them. Without any such item there is no mail unless
`min_products` is 0 (the announcement alone). `url` is the sale's landing page.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.recommendations import popularity, ranked_catalogue

COLUMNS = [
    "customer_id",
    "sale_id",
    "headline",
    "headline_en",
    "discount_text",
    "discount_text_en",
    "ends_on",
    "sale_url",
    "products",
]
SALE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _day(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def sale_products(
    products: pd.DataFrame,
    orders: pd.DataFrame,
    order_items: pd.DataFrame,
    as_of: date,
    limit: int,
    window_days: int = 90,
    categories: list[str] | tuple[str, ...] = (),
) -> list[int]:
    """In-stock overstock products, best sellers first (ties: lowest id), at most `limit`."""
    since = datetime.combine(as_of - timedelta(days=window_days), time.min)
    catalogue = ranked_catalogue(products, popularity(orders, order_items, since))
    overstock = set(products.loc[products["overstock"] & products["in_stock"], "id"].astype(int))
    chosen = catalogue[catalogue["id"].isin(overstock)]
    if categories:
        wanted = {c.strip().casefold() for c in categories}
        chosen = chosen[
            chosen["category"].astype("string").str.strip().str.casefold().isin(wanted).fillna(False)
        ]
    return chosen["id"].head(limit).astype(int).tolist()


def sale_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    sale_id: str,
    headline: str,
    discount_text: str,
    ends_on: date | str,
    headline_en: str = "",
    discount_text_en: str = "",
    limit: int = 6,
    min_products: int = 1,
    popularity_window_days: int = 90,
    categories: list[str] | tuple[str, ...] = (),
    url: str = "",
) -> pd.DataFrame:
    """One row per customer with the sale's texts, landing page (`url`; empty: the shop's home page)
    and products; empty after `ends_on` or when fewer than `min_products` sale products are in stock."""
    if not SALE_ID.match(str(sale_id)):
        raise ValueError(f"sale_id {sale_id!r}: use lowercase letters, digits, '_' or '-' (at most 64)")
    last_day = _day(ends_on)
    if as_of > last_day:
        return pd.DataFrame(columns=COLUMNS)
    products = sale_products(
        frames["products"],
        frames["orders"],
        frames["order_items"],
        as_of,
        limit,
        popularity_window_days,
        categories,
    )
    if len(products) < min_products:
        return pd.DataFrame(columns=COLUMNS)
    ids = frames["customers"]["id"].astype(int).to_numpy()
    return pd.DataFrame(
        {
            "customer_id": ids,
            "sale_id": str(sale_id),
            "headline": headline,
            "headline_en": headline_en or headline,
            "discount_text": discount_text,
            "discount_text_en": discount_text_en or discount_text,
            "ends_on": last_day,
            "sale_url": url,
            "products": [products] * len(ids),
        },
        columns=COLUMNS,
    )
