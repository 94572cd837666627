"""Shop-local time <-> the naive UTC the data contract stores (pure, shared by the audiences)."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pandas as pd

UTC = ZoneInfo("UTC")


def local_to_utc(day: date, tz: ZoneInfo, at: time = time.min) -> datetime:
    """The instant `at` o'clock shop time on `day`, as naive UTC."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def local_dates(stamps: pd.Series, tz: ZoneInfo) -> pd.Series:
    """Naive-UTC timestamps -> local calendar dates in `tz`."""
    return stamps.dt.tz_localize("UTC").dt.tz_convert(tz).dt.date
