"""Audience of the generic holiday mail: every holiday of the shop's calendar falling on the run day.

The calendar (`config/holidays.toml`, see `segments.holiday_calendar`) says which holidays exist, when
they fall and to whom they go (`f` women, `m` men, `all` everyone including unknown gender). On
`as_of` every customer matching the audience rule of a holiday of that day is a recipient; when two
holidays fall on the same day a customer gets only the first listed one that applies to them.
Occasion key `holiday:{holiday_key}:{year}`.

The builder cannot know the language a mail is rendered in, so the texts come in both languages:
`holiday_title_ru` / `holiday_title_en`, `greeting_ru` / `greeting_en` (`holiday_title` and `greeting`
hold the Russian ones). `products` are the in-stock best sellers of the holiday's featured category,
topped up with (or, without a category, simply) the shop's overall best sellers.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from segments.holiday_calendar import Holiday, load_calendar
from segments.recommendations import (
    bestsellers,
    category_bestsellers,
    pick_products,
    popularity,
    ranked_catalogue,
)

COLUMNS = [
    "customer_id",
    "holiday_key",
    "year",
    "holiday_title",
    "holiday_title_ru",
    "holiday_title_en",
    "greeting",
    "greeting_ru",
    "greeting_en",
    "category",
    "products",
]


def matches_audience(gender: pd.Series, holiday: Holiday) -> pd.Series:
    """Boolean mask of customers a holiday is for (gender 'f' / 'm' / NULL; case and spaces ignored)."""
    if holiday.audience == "all":
        return pd.Series(True, index=gender.index)
    normalised = gender.astype("string").str.strip().str.lower()
    return (normalised == holiday.audience.value).fillna(False).astype(bool)


def holiday_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    calendar: str | Path = "config/holidays.toml",
    limit: int = 4,
    bestseller_window_days: int = 90,
) -> pd.DataFrame:
    """One row per customer greeted on `as_of` (see the module docstring); empty on ordinary days.

    `calendar`: the calendar file, relative to the project root unless absolute.
    """
    todays = load_calendar(calendar).holidays_on(as_of)
    if not todays:
        return pd.DataFrame(columns=COLUMNS)
    customers = frames["customers"]
    orders, items = frames["orders"], frames["order_items"]
    since = datetime.combine(as_of - timedelta(days=bestseller_window_days), time.min)
    catalogue = ranked_catalogue(frames["products"], popularity(orders, items, since))
    top = bestsellers(catalogue, limit)

    taken = pd.Series(False, index=customers.index)
    parts = []
    for holiday in todays:
        chosen = matches_audience(customers["gender"], holiday) & ~taken
        taken |= chosen
        if not chosen.any():
            continue
        featured = category_bestsellers(catalogue, holiday.category, limit) if holiday.category else []
        products = pick_products(featured, top, set(), limit)
        count = int(chosen.sum())
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": customers.loc[chosen, "id"].astype(int).to_numpy(),
                    "holiday_key": holiday.key,
                    "year": as_of.year,
                    "holiday_title": holiday.title_ru,
                    "holiday_title_ru": holiday.title_ru,
                    "holiday_title_en": holiday.title_en,
                    "greeting": holiday.greeting_ru,
                    "greeting_ru": holiday.greeting_ru,
                    "greeting_en": holiday.greeting_en,
                    "category": holiday.category or "",
                    "products": [products] * count,
                },
                columns=COLUMNS,
            )
        )
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)
