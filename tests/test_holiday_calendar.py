"""The holiday calendar (parse, validate, resolve dates) and the holiday audience, on crafted data."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from segments.audiences.holiday import holiday_audience
from segments.holiday_calendar import (
    DEFAULT_CALENDAR,
    HolidayCalendarError,
    holidays_on,
    load_calendar,
    parse_calendar,
)

MSK = ZoneInfo("Europe/Moscow")
TEXTS = 'title_ru = "Т"\ntitle_en = "T"\ngreeting_ru = "Привет"\ngreeting_en = "Hi"\n'


def _entry(key: str, rule: str, audience: str = "all", extra: str = "") -> str:
    return f'[[holiday]]\nkey = "{key}"\n{rule}\naudience = "{audience}"\n{TEXTS}{extra}\n'


def _frames(sold_on: str = "2026-02-01") -> dict[str, pd.DataFrame]:
    """Five customers; product 12 (tools) sold best on `sold_on`, then 11 (perfume)."""
    customers = pd.DataFrame({"id": [1, 2, 3, 4, 5], "gender": ["f", "m", None, "F", "m"]})
    products = pd.DataFrame(
        {
            "id": [10, 11, 12, 13],
            "category": ["Парфюмерия", "Парфюмерия", "tools", "tools"],
            "brand": ["A", "B", "C", "D"],
            "in_stock": [True, True, True, False],
        }
    )
    orders = pd.DataFrame(
        {"id": [100], "customer_id": [1], "status": ["delivered"], "created_at": pd.to_datetime([sold_on])}
    )
    items = pd.DataFrame({"order_id": [100, 100], "product_id": [12, 11], "qty": [5, 1], "price": [1.0, 1.0]})
    return {"customers": customers, "orders": orders, "order_items": items, "products": products}


def test_shipped_calendar_parses_and_resolves() -> None:
    calendar = load_calendar()
    assert [h.key for h in calendar.entries] == ["womens_day", "defenders_day", "new_year"]
    assert calendar.dates(2027) == {
        "womens_day": date(2027, 3, 8),
        "defenders_day": date(2027, 2, 23),
        "new_year": date(2027, 12, 31),
    }
    assert holidays_on(date(2026, 7, 15)) == []


def test_womens_day_goes_to_women_only() -> None:
    audience = holiday_audience(_frames(), date(2026, 3, 8), MSK)
    assert sorted(audience["customer_id"]) == [1, 4]  # "F" counts as f
    row = audience.iloc[0]
    assert row["holiday_key"] == "womens_day" and row["year"] == 2026
    assert row["greeting_ru"] and row["greeting_en"] and row["holiday_title_en"]
    assert row["products"] == [11, 10, 12]  # featured category first, then overall best sellers


def test_defenders_day_goes_to_men_only() -> None:
    audience = holiday_audience(_frames("2027-02-01"), date(2027, 2, 23), MSK)
    assert sorted(audience["customer_id"]) == [2, 5]
    assert set(audience["holiday_key"]) == {"defenders_day"}
    assert audience.iloc[0]["products"] == [12, 11, 10]  # no category: overall best sellers, in stock


def test_new_year_goes_to_everyone_including_unknown_gender() -> None:
    audience = holiday_audience(_frames(), date(2026, 12, 31), MSK)
    assert sorted(audience["customer_id"]) == [1, 2, 3, 4, 5]
    assert set(audience["holiday_key"]) == {"new_year"} and set(audience["year"]) == {2026}


def test_nothing_on_an_ordinary_day() -> None:
    audience = holiday_audience(_frames(), date(2026, 3, 9), MSK)
    assert audience.empty and {"customer_id", "holiday_key", "year", "products"} <= set(audience.columns)


def test_two_holidays_one_day_each_customer_gets_the_first_listed_that_applies(tmp_path: Path) -> None:
    path = tmp_path / "holidays.toml"
    path.write_text(
        _entry("ladies", 'date = "05-05"', "f", 'category = "Парфюмерия"\n')
        + _entry("everyone", 'date = "05-05"', "all")
        + _entry("gents", 'date = "05-05"', "m"),
        encoding="utf-8",
    )
    assert [h.key for h in load_calendar(path).holidays_on(date(2026, 5, 5))] == [
        "ladies",
        "everyone",
        "gents",
    ]
    audience = holiday_audience(_frames("2026-05-01"), date(2026, 5, 5), MSK, calendar=str(path), limit=2)
    by_customer = dict(zip(audience["customer_id"], audience["holiday_key"], strict=True))
    assert by_customer == {1: "ladies", 4: "ladies", 2: "everyone", 3: "everyone", 5: "everyone"}
    assert audience["customer_id"].is_unique
    products = dict(zip(audience["holiday_key"], audience["products"], strict=False))
    assert products == {"ladies": [11, 10], "everyone": [12, 11]}


def test_named_dates_resolve_with_the_holidays_package() -> None:
    calendar = parse_calendar(
        _entry("defenders", 'holiday = "Defender of the Fatherland Day"')
        + _entry("ny_first", 'holiday = "New Year Holidays"')
        + _entry("ny_last", 'holiday = "New Year Holidays"\noccurrence = "last"')
        + _entry("ny_eve", 'holiday = "New Year Holidays"\noffset_days = -1')
        + _entry("victory", 'holiday = "Victory Day"')
    )
    assert calendar.dates(2026) == {
        "defenders": date(2026, 2, 23),
        "ny_first": date(2026, 1, 1),
        "ny_last": date(2026, 1, 8),  # 7 January is Christmas, 8 January the last New Year day off
        "ny_eve": date(2025, 12, 31),
        "victory": date(2026, 5, 9),  # not the observed Monday 11 May
    }
    assert [h.key for h in calendar.holidays_on(date(2026, 12, 31))] == ["ny_eve"]  # 2027's eve
    assert [h.key for h in calendar.holidays_on(date(2026, 5, 11))] == []


def test_fixed_29_february_falls_on_28_february_in_other_years() -> None:
    calendar = parse_calendar(_entry("leap", 'date = "02-29"'))
    assert calendar.dates(2028)["leap"] == date(2028, 2, 29)
    assert calendar.dates(2027)["leap"] == date(2027, 2, 28)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_entry("bad", 'date = "02-30"'), r"holiday #1 \(bad\) date: date must be 'MM-DD'.*'02-30'"),
        (_entry("bad", 'date = "3-8"'), r"two digits"),
        (_entry("bad", 'holiday = "Womens Day"'), r"unknown holiday name 'Womens Day'.*'Victory Day'"),
        (_entry("bad", ""), r"give exactly one of date = 'MM-DD' or holiday = '<name>'"),
        (_entry("bad", 'date = "03-08"\nholiday = "Victory Day"'), r"exactly one of"),
        (_entry("bad", 'date = "03-08"', "women"), r"holiday #1 \(bad\) audience: .*'f', 'm' or 'all'"),
        (_entry("aa", 'date = "03-08"') + _entry("aa", 'date = "03-09"'), r"duplicate holiday keys: aa"),
        (_entry("Bad Key", 'date = "03-08"'), r"holiday #1 \(Bad Key\) key: String should match"),
        (_entry("bad", 'date = "03-08"', extra='colour = "red"\n'), r"colour: Extra inputs"),
        (_entry("bad", 'date = "03-08"').replace('greeting_en = "Hi"\n', ""), r"greeting_en: Field required"),
        ('[[holiday]\nkey = "x"', r"not valid TOML"),
    ],
)
def test_invalid_calendars_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(HolidayCalendarError, match=message) as error:
        parse_calendar(text, source="holidays.toml")
    assert str(error.value).startswith("holidays.toml: ")


def test_missing_calendar_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HolidayCalendarError, match="nope.toml: cannot read the holiday calendar"):
        load_calendar(tmp_path / "nope.toml")
    assert DEFAULT_CALENDAR.is_file()
