"""Audience of the name-day mail (именины): customers whose first name has a name day on the run day.

The name days come from the shop's table (`config/name_days.toml`, the campaign's `calendar` param):
`[days]` "MM-DD" -> names, `[variants]` variant -> name (Наталия -> Наталья, Юрий -> Георгий). A
customer's first name matches ignoring case, surrounding spaces and ё/е. A "02-29" name day falls on
28 February in other years. A missing or empty table means an empty audience, not an error; an
invalid one is an error naming the file and the entry.

Occasion key `name_day:{year}:{name_day}` (`name_day` = the run day as "MM-DD"): one mail per name
day and year, however often the campaign runs that day. Customers whose birthday is the same day get
the birthday mail instead and are skipped here (`segments.audiences.birthday.birthday_today`, 29 February
birthdays included). Each recipient gets a few recommendations: best sellers of the category they
bought most, topped up with the shop's best sellers, never what they already have.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from segments.audiences.birthday import birthday_today, favourite_picks

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TABLE = REPO_ROOT / "config" / "name_days.toml"
COLUMNS = ["customer_id", "year", "name_day", "favourite_category", "products"]


class NameDayTableError(ValueError):
    """The name-day table is invalid; the message names the file and the entry."""


def normalise_name(name: object) -> str:
    """Comparable form of a first name: trimmed, lower case, ё -> е, inner spaces collapsed."""
    if not isinstance(name, str):
        return ""
    return " ".join(name.replace("ё", "е").replace("Ё", "Е").lower().split())


def _normalised(names: pd.Series) -> pd.Series:
    text = names.astype("string").fillna("")
    text = text.str.replace("ё", "е", regex=False).str.replace("Ё", "Е", regex=False).str.lower()
    return text.str.split().str.join(" ").fillna("")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@dataclass(frozen=True)
class NameDayTable:
    """Month-day -> names, plus name variants (everything kept normalised for matching)."""

    days: Mapping[str, frozenset[str]] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.days.values())

    def canonical(self, name: object) -> str:
        """The name a variant stands for (normalised); other names stay as they are."""
        return self.variants.get(normalise_name(name), normalise_name(name))

    def names_on(self, day: date) -> frozenset[str]:
        """Normalised canonical names with a name day on `day` (02-29 counts on 02-28 in other years)."""
        names = set(self.days.get(f"{day.month:02d}-{day.day:02d}", ()))
        if (day.month, day.day) == (2, 28) and not _is_leap(day.year):
            names |= self.days.get("02-29", frozenset())
        return frozenset(names)

    def celebrating(self, first_names: pd.Series, day: date) -> pd.Series:
        """Boolean mask of the first names with a name day on `day`."""
        todays = self.names_on(day)
        if not todays:
            return pd.Series(False, index=first_names.index)
        normalised = _normalised(first_names)
        canonical = normalised.map(lambda n: self.variants.get(n, n))
        return canonical.isin(todays).astype(bool)


def _month_day(key: str, source: str) -> str:
    try:
        month, day = (int(part) for part in key.split("-"))
        date(2000, month, day)  # a leap year: 02-29 is valid
    except ValueError:
        raise NameDayTableError(f"{source}: [days] key {key!r} must be 'MM-DD', e.g. '05-24'") from None
    if len(key) != 5:
        raise NameDayTableError(f"{source}: [days] key {key!r} must be 'MM-DD' with two digits each")
    return key


def parse_name_days(text: str, source: str = "name_days.toml") -> NameDayTable:
    """Parse and validate the table's TOML text; errors raise `NameDayTableError` naming `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NameDayTableError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"days", "variants"}
    if unknown:
        raise NameDayTableError(f"{source}: unknown tables {sorted(unknown)}; expected [days] and [variants]")
    raw_days, raw_variants = data.get("days", {}), data.get("variants", {})
    if not isinstance(raw_days, dict) or not isinstance(raw_variants, dict):
        raise NameDayTableError(f"{source}: [days] and [variants] must be tables")
    days: dict[str, frozenset[str]] = {}
    for key, names in raw_days.items():
        _month_day(key, source)
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise NameDayTableError(f"{source}: [days] {key!r} must be a list of names")
        days[key] = frozenset(normalise_name(n) for n in names)
    variants: dict[str, str] = {}
    for variant, name in raw_variants.items():
        if not isinstance(name, str) or not name.strip() or not variant.strip():
            raise NameDayTableError(f'{source}: [variants] {variant!r} must name a name, e.g. "Наталья"')
        variants[normalise_name(variant)] = normalise_name(name)
    variants = {v: n for v, n in variants.items() if v != n}
    resolved: dict[str, str] = {}
    for variant, target in variants.items():  # follow chains (a -> b -> c); a cycle is an error
        seen = {variant}
        while target in variants and target not in seen:
            seen.add(target)
            target = variants[target]
        if target in seen:
            raise NameDayTableError(f"{source}: [variants] {variant!r} leads back to itself")
        resolved[variant] = target
    return NameDayTable(days, resolved)


def resolve_path(path: str | Path | None) -> Path:
    """A table path from a campaign's params; relative paths are relative to the project root."""
    if path is None:
        return DEFAULT_TABLE
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def load_name_days(path: str | Path | None = None) -> NameDayTable:
    """Read the table (default `config/name_days.toml`); a missing file is an empty table."""
    file = resolve_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NameDayTable()
    except OSError as exc:
        raise NameDayTableError(f"{file}: cannot read the name-day table: {exc.strerror}") from exc
    return parse_name_days(text, source=file.name)


def name_day_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    calendar: str | Path = "config/name_days.toml",
    limit: int = 4,
    bestseller_window_days: int = 90,
) -> pd.DataFrame:
    """One row per customer with a name day on `as_of` (see the module docstring).

    Columns: customer_id, year, name_day ("MM-DD" of `as_of`), favourite_category ("" if the customer
    has bought nothing in the extract), products (recommended product ids).
    """
    table = load_name_days(calendar)
    customers = frames["customers"]
    if table.empty or customers.empty:
        return pd.DataFrame(columns=COLUMNS)
    chosen = table.celebrating(customers["first_name"], as_of)
    if "birth_date" in customers.columns:
        chosen &= ~birthday_today(customers["birth_date"], as_of)
    ids = customers.loc[chosen, "id"].astype(int).drop_duplicates()
    if ids.empty:
        return pd.DataFrame(columns=COLUMNS)
    categories, picks = favourite_picks(ids, frames, as_of, limit, bestseller_window_days)
    return pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "year": as_of.year,
            "name_day": f"{as_of.month:02d}-{as_of.day:02d}",
            "favourite_category": categories,
            "products": pd.Series(picks, dtype=object).to_numpy(),
        },
        columns=COLUMNS,
    )
