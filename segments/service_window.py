"""The event window of the service mails (one rule shared by every polled audience builder).

A polled builder mails the events (registrations, password-reset requests, order status changes)
whose time falls in `[since, until)`, naive UTC like the data contract:

- the service poller passes `window=(since, until)`: from its watermark (minus an overlap) to now;
- without a window (a daily or manual run, `shopmail run welcome --as-of D`) the window is the whole
  shop-local day `as_of`;
- `max_age_hours` moves `since` forward to `until - max_age_hours` when it is earlier, so a first run
  (or a catch-up after a long outage) never mails ancient history. Events exactly at the cut-off
  still count; events at `until` belong to the next window.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_to_utc

Window = tuple[datetime, datetime]


def _naive(value: datetime) -> datetime:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def event_window(
    as_of: date, tz: ZoneInfo, window: Window | None = None, max_age_hours: float | None = None
) -> Window:
    """The `[since, until)` (naive UTC) a service builder selects events from (see module docstring)."""
    if window is None:
        since, until = local_to_utc(as_of, tz), local_to_utc(as_of + timedelta(days=1), tz)
    else:
        since, until = (_naive(w) for w in window)
        if since > until:
            raise ValueError(f"window starts after it ends: {since} > {until}")
    if max_age_hours is not None:
        if max_age_hours <= 0:
            raise ValueError(f"max_age_hours must be > 0, got {max_age_hours}")
        since = max(since, until - timedelta(hours=float(max_age_hours)))
    return since, until


def in_window(stamps: pd.Series, window: Window) -> pd.Series:
    """True where a naive-UTC timestamp is inside `[since, until)` (NaT is never inside)."""
    since, until = window
    return (stamps >= since) & (stamps < until)
