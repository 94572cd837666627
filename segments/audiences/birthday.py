"""Audience of the birthday mail: customers whose birthday is the run day (shop-local date).

Rule: the customer's `birth_date` has the month and day of `as_of`; people born on 29 February are
congratulated on 28 February in years without a 29 February. Customers without a birth date, or born
in the year of `as_of` or later (bad data), get nothing. Occasion key `birthday:{year}`: one mail a
year, however often the campaign runs that day.

Each recipient gets a few recommended products: in-stock best sellers of the category they bought most
(units, non-cancelled orders in the extract), never something they already bought, topped up with the
shop's overall best sellers. The birth date itself never reaches the templates (only `age`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.recommendations import (
    bestsellers,
    category_bestsellers,
    pick_products,
    popularity,
    ranked_catalogue,
)

COLUMNS = ["customer_id", "year", "age", "favourite_category", "products"]


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def birthday_today(birth_dates: pd.Series, as_of: date) -> pd.Series:
    """Boolean mask: the birthday (month and day) is `as_of`; 29 Feb counts on 28 Feb in other years."""
    born = pd.to_datetime(birth_dates, errors="coerce")
    month, day = born.dt.month, born.dt.day
    mask = (month == as_of.month) & (day == as_of.day)
    if (as_of.month, as_of.day) == (2, 28) and not _is_leap(as_of.year):
        mask |= (month == 2) & (day == 29)
    return (mask & (born.dt.year < as_of.year)).fillna(False).astype(bool)


def favourite_categories(
    customer_ids: pd.Series, orders: pd.DataFrame, order_items: pd.DataFrame, products: pd.DataFrame
) -> pd.Series:
    """Customer id -> the product category they bought most units of (ties: alphabetical)."""
    mine = orders.loc[
        orders["customer_id"].isin(customer_ids) & (orders["status"] != "cancelled"), ["id", "customer_id"]
    ]
    items = order_items.merge(mine, left_on="order_id", right_on="id")[["customer_id", "product_id", "qty"]]
    items = items.merge(products[["id", "category"]], left_on="product_id", right_on="id")
    items = items.dropna(subset=["category"])
    if items.empty:
        return pd.Series(dtype=object)
    units = items.groupby(["customer_id", "category"], as_index=False)["qty"].sum()
    units = units.sort_values(["customer_id", "qty", "category"], ascending=[True, False, True])
    return units.drop_duplicates("customer_id").set_index("customer_id")["category"]


def owned_products(
    customer_ids: pd.Series, orders: pd.DataFrame, order_items: pd.DataFrame
) -> dict[int, set[int]]:
    """Customer id -> ids of every product they ordered (in the extract; cancelled orders excluded)."""
    mine = orders.loc[
        orders["customer_id"].isin(customer_ids) & (orders["status"] != "cancelled"), ["id", "customer_id"]
    ]
    items = order_items.merge(mine, left_on="order_id", right_on="id")
    return {int(cid): {int(p) for p in group} for cid, group in items.groupby("customer_id")["product_id"]}


def birthday_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    limit: int = 4,
    bestseller_window_days: int = 90,
) -> pd.DataFrame:
    """One row per customer whose birthday is `as_of` (see the module docstring).

    Columns: customer_id, year (of `as_of`: the occasion key), age, favourite_category ("" if the
    customer has bought nothing in the extract),
    products (recommended product ids).
    """
    customers = frames["customers"]
    born = customers.loc[birthday_today(customers["birth_date"], as_of), ["id", "birth_date"]]
    if born.empty:
        return pd.DataFrame(columns=COLUMNS)
    ids = born["id"].astype(int)
    categories, picks = favourite_picks(ids, frames, as_of, limit, bestseller_window_days)
    rows = [
        {
            "customer_id": customer_id,
            "year": as_of.year,
            "age": as_of.year - birth_date.year,
            "favourite_category": category,
            "products": products,
        }
        for customer_id, birth_date, category, products in zip(
            ids.tolist(), born["birth_date"].tolist(), categories, picks, strict=True
        )
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def favourite_picks(
    ids: pd.Series, frames: dict[str, pd.DataFrame], as_of: date, limit: int, window_days: int
) -> tuple[list[str], list[list[int]]]:
    """For each customer of `ids`: their favourite category ("" if none) and `limit` products:
    best sellers of that category, topped up with the shop's, never what they already own."""
    orders, items, products = frames["orders"], frames["order_items"], frames["products"]
    since = datetime.combine(as_of - timedelta(days=window_days), time.min)
    catalogue = ranked_catalogue(products, popularity(orders, items, since))
    favourites = favourite_categories(ids, orders, items, products)
    owned = owned_products(ids, orders, items)
    depth = limit * 4  # room for what the customer already owns
    top = bestsellers(catalogue, depth)
    by_category: dict[str, list[int]] = {}
    categories, picks = [], []
    for customer_id in ids.tolist():
        category = favourites.get(customer_id)
        category = category if isinstance(category, str) else ""
        if category and category not in by_category:
            by_category[category] = category_bestsellers(catalogue, category, depth)
        categories.append(category)
        picks.append(pick_products(by_category.get(category, []), top, owned.get(customer_id, set()), limit))
    return categories, picks
