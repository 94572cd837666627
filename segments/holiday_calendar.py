"""The shop's holiday calendar (`config/holidays.toml`): parse, validate, resolve dates (pure, no Prefect).

Each `[[holiday]]` entry names one holiday mail:

- `key`: identifier used in the occasion key (`holiday:{key}:{year}`), e.g. `womens_day`;
- the date, exactly one of
  - `date = "MM-DD"`: a fixed day every year (a 29 February holiday falls on 28 February in other
    years), or
  - `holiday = "<name>"`: a holiday of the `holidays` package's Russia calendar (English names, e.g.
    "Defender of the Fatherland Day", "New Year Holidays"); `occurrence = "first" | "last"` picks
    the day of a multi-day holiday (default first); "(observed)" days moved by the law are other
    names and never match;
  and optionally `offset_days` (e.g. -1: the day before);
- `audience`: `f` (women), `m` (men) or `all` (everyone, also customers of unknown gender);
- `title_ru`, `title_en`, `greeting_ru`, `greeting_en`: texts for the mail;
- `category`: optional product category whose best sellers the mail features.

Entries are kept in file order: when two holidays fall on the same day, a customer gets only the first
listed one that applies to them (`segments.audiences.holiday.holiday_audience`).
"""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Literal

import holidays
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CALENDAR = REPO_ROOT / "config" / "holidays.toml"
NAME_LANGUAGE = "en_US"  # the language of holiday names in the calendar file
_NAME_CHECK_YEARS = range(2020, 2036)


class HolidayCalendarError(ValueError):
    """The holiday calendar file is missing or invalid; the message names the file and the entry."""


class Audience(StrEnum):
    women = "f"
    men = "m"
    all = "all"


@cache
def russian_holidays(year: int) -> dict[date, str]:
    """Russia's public holidays of `year` from the `holidays` package, date -> English name."""
    return dict(holidays.RU(years=year, language=NAME_LANGUAGE).items())


@cache
def known_holiday_names() -> frozenset[str]:
    """Every holiday name the Russia calendar uses over a range of years ("… (observed)" excluded)."""
    return frozenset(
        name
        for year in _NAME_CHECK_YEARS
        for name in russian_holidays(year).values()
        if "(observed)" not in name and not name.startswith("Day off")
    )


def _fixed_day(month: int, day: int, year: int) -> date:
    """`month`/`day` in `year`; 29 February is 28 February in years without it."""
    if (month, day) == (2, 29) and not _is_leap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


class Holiday(BaseModel):
    """One holiday of the calendar."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$", description="Used in the occasion key.")
    date: str | None = Field(None, description="Fixed day 'MM-DD', e.g. '03-08'.")
    holiday: str | None = Field(None, description="Name in the `holidays` package's Russia calendar.")
    occurrence: Literal["first", "last"] = Field("first", description="Day of a multi-day named holiday.")
    offset_days: int = Field(0, ge=-60, le=60, description="Days added to the resolved date.")
    audience: Audience
    title_ru: str = Field(min_length=1)
    title_en: str = Field(min_length=1)
    greeting_ru: str = Field(min_length=1)
    greeting_en: str = Field(min_length=1)
    category: str | None = Field(None, min_length=1, description="Product category to feature.")

    @field_validator("date")
    @classmethod
    def _month_day(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            month, day = (int(part) for part in value.split("-"))
            date(2000, month, day)  # a leap year: 02-29 is valid
        except ValueError:
            raise ValueError(f"date must be 'MM-DD', e.g. '03-08'; got {value!r}") from None
        if len(value) != 5:
            raise ValueError(f"date must be 'MM-DD' with two digits each, e.g. '03-08'; got {value!r}")
        return value

    @field_validator("holiday")
    @classmethod
    def _known_name(cls, value: str | None) -> str | None:
        if value is not None and value not in known_holiday_names():
            known = ", ".join(repr(n) for n in sorted(known_holiday_names()))
            raise ValueError(f"unknown holiday name {value!r}; the Russia calendar has: {known}")
        return value

    @model_validator(mode="after")
    def _one_date_rule(self) -> Holiday:
        if (self.date is None) == (self.holiday is None):
            raise ValueError("give exactly one of date = 'MM-DD' or holiday = '<name>'")
        return self

    def date_in(self, year: int) -> date | None:
        """The day this holiday's mail goes out for `year` (None if the named holiday is absent)."""
        if self.date is not None:
            month, day = (int(part) for part in self.date.split("-"))
            base = _fixed_day(month, day, year)
        else:
            days = sorted(d for d, name in russian_holidays(year).items() if name == self.holiday)
            if not days:
                return None
            base = days[0] if self.occurrence == "first" else days[-1]
        return base + timedelta(days=self.offset_days)

    def falls_on(self, day: date) -> bool:
        # an offset may move the date across New Year: look at the neighbouring years too
        return any(self.date_in(year) == day for year in (day.year - 1, day.year, day.year + 1))


class HolidayCalendar(BaseModel):
    """The whole calendar, in file order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    holiday: tuple[Holiday, ...] = ()

    @field_validator("holiday")
    @classmethod
    def _unique_keys(cls, value: tuple[Holiday, ...]) -> tuple[Holiday, ...]:
        keys = [h.key for h in value]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"duplicate holiday keys: {', '.join(duplicates)}")
        return value

    @property
    def entries(self) -> tuple[Holiday, ...]:
        return self.holiday

    def holidays_on(self, day: date) -> list[Holiday]:
        """Holidays whose mail goes out on `day`, in calendar order."""
        return [h for h in self.holiday if h.falls_on(day)]

    def dates(self, year: int) -> dict[str, date | None]:
        """Key -> the day of each holiday in `year` (for listings and checks)."""
        return {h.key: h.date_in(year) for h in self.holiday}


def _describe(error: ValidationError, data: dict) -> str:
    """Readable pydantic errors: 'holiday[1] (key 'x') date: ...'."""
    lines = []
    entries = data.get("holiday") if isinstance(data.get("holiday"), list) else []
    for item in error.errors():
        loc = list(item["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "holiday" and isinstance(loc[1], int):
            index = loc[1]
            key = (
                entries[index].get("key")
                if index < len(entries) and isinstance(entries[index], dict)
                else None
            )
            where = f"holiday #{index + 1}" + (f" ({key})" if key else "")
            rest = ".".join(str(p) for p in loc[2:])
            where += f" {rest}" if rest else ""
        else:
            where = ".".join(str(p) for p in loc) or "calendar"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse_calendar(text: str, source: str = "holidays.toml") -> HolidayCalendar:
    """Parse and validate calendar TOML text; errors raise `HolidayCalendarError` naming `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HolidayCalendarError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return HolidayCalendar(**data)
    except ValidationError as exc:
        raise HolidayCalendarError(f"{source}: {_describe(exc, data)}") from exc


def resolve_path(path: str | Path | None) -> Path:
    """A calendar path from a campaign's params; relative paths are relative to the project root."""
    if path is None:
        return DEFAULT_CALENDAR
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def load_calendar(path: str | Path | None = None) -> HolidayCalendar:
    """Read and validate the calendar file (default `config/holidays.toml`)."""
    file = resolve_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise HolidayCalendarError(f"{file}: cannot read the holiday calendar: {exc.strerror}") from exc
    return parse_calendar(text, source=file.name)


def holidays_on(day: date, calendar: HolidayCalendar | None = None) -> list[Holiday]:
    """Holidays of `calendar` (default: the shop's calendar file) falling on `day`, in file order."""
    return (calendar or load_calendar()).holidays_on(day)
