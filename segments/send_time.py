"""Quiet hours and send times in the customer's local time zone (pure; vectorised by city).

Russia spans 11 time zones: 09:00 in Kaliningrad is 16:00 in Petropavlovsk-Kamchatsky. A customer's
zone comes from their city (`config/cities.toml`; case, "ё"/"е" and a leading "г."/"город" ignored);
an unknown or empty city gets the shop time zone.

Quiet hours (`SHOPMAIL_QUIET_HOURS`, default "21-9") are a customer-local interval without marketing
mail, start inclusive, end exclusive, wrapping over midnight when start > end ("21-9" = 21:00-08:59:59).
A marketing mail composed while its customer is inside the quiet hours is not dropped but scheduled:
`send_at` = the next end of the quiet hours in the customer's zone (09:00 local), as a unix timestamp
(SendGrid delivers it then; it is never more than 24 h ahead, well within SendGrid's 72 h limit).
Outside the quiet hours `send_at` is None (send now). Service mails ignore quiet hours.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from config.quiet_hours import QuietHours

CITIES_FILE = Path(__file__).resolve().parent.parent / "config" / "cities.toml"
ZONE_COLUMN = "local_tz"  # the recipients' IANA zone, added by `shopmail.run.pipeline.select_recipients`

_CITY_PREFIX = re.compile(r"^(?:г\.|г\s|город\s)\s*")


def normalise_city(name: object) -> str:
    """Matching key of a city name: 'г. Орел ' -> 'орел'."""
    if not isinstance(name, str):
        return ""
    key = " ".join(name.strip().lower().replace("ё", "е").split())
    return _CITY_PREFIX.sub("", key)


@lru_cache(maxsize=4)
def city_zones(path: Path = CITIES_FILE) -> dict[str, str]:
    """Normalised city name -> IANA zone, from `config/cities.toml` (zones checked on load)."""
    table = tomllib.loads(path.read_text(encoding="utf-8")).get("cities", {})
    zones = {normalise_city(city): str(zone) for city, zone in table.items()}
    for zone in set(zones.values()):
        ZoneInfo(zone)  # raises for an unknown zone name
    return zones


def zones_for_cities(cities: pd.Series, default: str, table: Mapping[str, str] | None = None) -> pd.Series:
    """IANA zone of each city (the `default` zone for unknown or missing cities); one lookup per
    distinct value, so a million customers cost a few hundred lookups."""
    table = city_zones() if table is None else table
    keys = cities.astype(object).where(cities.notna(), "")
    mapping = {value: table.get(normalise_city(value), default) for value in pd.unique(keys)}
    return keys.map(mapping).astype(object)


def customer_zones(
    customer_ids: pd.Series,
    customers: pd.DataFrame,
    default: str,
    table: Mapping[str, str] | None = None,
) -> pd.Series:
    """Zone of each customer id (customers: id, city), aligned with `customer_ids`."""
    if "city" not in customers.columns:
        return pd.Series(default, index=customer_ids.index, dtype=object)
    city = customers.drop_duplicates("id").set_index("id")["city"]
    cities = pd.Series(city.reindex(customer_ids.to_numpy()).to_numpy(), index=customer_ids.index)
    return zones_for_cities(cities, default, table)


def _aware_utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


@lru_cache(maxsize=16)
def quiet_hours(spec: str | None) -> QuietHours | None:
    """`QuietHours.parse`, cached (called once per composed mail)."""
    return QuietHours.parse(spec)


def send_at(zone: object, now: datetime, quiet: QuietHours | None, default: str = "UTC") -> int | None:
    """Unix timestamp to deliver a marketing mail composed at `now` (naive UTC or aware) to a customer in
    `zone` (None/'': `default`): the end of the quiet hours if `now` is inside them there, else None."""
    if quiet is None:
        return None
    local = _aware_utc(now).astimezone(ZoneInfo(zone if isinstance(zone, str) and zone else default))
    allowed = quiet.next_allowed(local)
    return None if allowed is None else int(allowed.timestamp())


def send_at_by_zone(zones: pd.Series, now: datetime, quiet: QuietHours | None) -> pd.Series:
    """`send_at` of each row's zone (nullable Int64: <NA> = send now), computed once per distinct zone."""
    mapping = {zone: send_at(zone, now, quiet) for zone in pd.unique(zones)}
    return zones.map(mapping).astype("Int64")
