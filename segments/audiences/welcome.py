"""Audience of the registration welcome mail (a polled service mail).

Rule: customers whose `registered_at` is inside the event window (the poller's `[since, until)`,
or the whole shop-local day `as_of` without one; never older than `max_age_hours` before the
window's end, see `segments.service_window`). Once per customer: occasion key `welcome:{customer_id}`.

Columns: customer_id, registered_at, registered_on (shop-local date), discount_card (str or None).
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pandas as pd

from segments.local_time import local_dates
from segments.service_window import Window, event_window, in_window

COLUMNS = ["customer_id", "registered_at", "registered_on", "discount_card"]


def welcome_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    window: Window | None = None,
    max_age_hours: float = 72,
) -> pd.DataFrame:
    """One row per customer who registered in the window."""
    customers = frames["customers"]
    hits = customers[in_window(customers["registered_at"], event_window(as_of, tz, window, max_age_hours))]
    if hits.empty:
        return pd.DataFrame(columns=COLUMNS)
    hits = hits.sort_values("id")
    cards = hits["discount_card"] if "discount_card" in hits.columns else pd.Series(None, index=hits.index)
    return pd.DataFrame(
        {
            "customer_id": hits["id"].astype(int).to_numpy(),
            "registered_at": hits["registered_at"].to_numpy(),
            "registered_on": local_dates(hits["registered_at"], tz).to_numpy(),
            "discount_card": pd.Series(
                [c.strip() if isinstance(c, str) and c.strip() else None for c in cards], dtype=object
            ),
        },
        columns=COLUMNS,
    )
