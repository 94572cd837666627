"""Why a campaign's audience is empty on a day, as a code and its values (the words are in
shopmail/run/vocabulary.py `ZERO`): "the sale ended on 2026-11-30", "no one's birthday today".

Pure: reads the campaign's parameters and the day, never the shop's rows (an empty audience from a
rule that found nobody is `no_match`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

EmptyReason = tuple[str, dict[str, str]]


def _day(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def audience_empty_reason(audience: str, params: Mapping[str, Any], as_of: date) -> EmptyReason:
    """The code and values of why the audience builder `audience` found nobody on `as_of`."""
    day = {"day": as_of.isoformat()}
    if audience == "sale":
        last = _day(params.get("ends_on"))
        if last is not None and as_of > last:
            return "sale_ended", {"ends_on": last.isoformat(), **day}
        return "sale_no_products", {"min_products": str(params.get("min_products", 1)), **day}
    if audience == "birthday":
        return "no_birthday", day
    if audience == "name_day":
        return "no_name_day", day
    if audience == "holiday":
        return "no_holiday", day
    return "no_match", day
