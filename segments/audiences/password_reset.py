"""Audience of the password-reset mail (a polled service mail).

Rule: password-reset requests (`password_resets`) whose `requested_at` is inside the event window
(the poller's `[since, until)`, or the whole shop-local day `as_of` without one; optionally never
older than `max_age_hours`, see `segments.service_window`) and whose link is still valid at the
window's end (`expires_at > until`): an expired link is never mailed. When a customer asked more
than once in the window only the latest request counts (shops invalidate the older links), and only
if it is still valid. Requests without a link or an expiry are skipped. Occasion key
`password_reset:{reset_id}`.

The reset URL is a secret: it goes into the mail as issued (no UTM tags, which could break a signed
link) and must carry its secret in a `token=` query parameter, which the run report redacts from the
sample mail (`shopmail.run.run_report.redact_tokens`). Only ids reach the ledger and `custom_args`.

Columns: customer_id, reset_id, requested_at, expires_at, valid_minutes, reset_url.
"""

from __future__ import annotations

import re
from datetime import date
from zoneinfo import ZoneInfo

import pandas as pd

from segments.service_window import Window, event_window, in_window

URL = re.compile(r"^https?://\S+$")  # as the data check of `password_resets.reset_url`
COLUMNS = ["customer_id", "reset_id", "requested_at", "expires_at", "valid_minutes", "reset_url"]


def password_reset_audience(
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    window: Window | None = None,
    max_age_hours: float | None = None,
) -> pd.DataFrame:
    """One row per customer with a live reset request in the window (see the module docstring)."""
    resets = frames["password_resets"]
    since, until = event_window(as_of, tz, window, max_age_hours)
    asked = resets[in_window(resets["requested_at"], (since, until)) & resets["customer_id"].notna()]
    latest = asked.sort_values(["customer_id", "requested_at", "id"]).drop_duplicates(
        "customer_id", keep="last"
    )
    live = latest[
        (latest["expires_at"] > until)
        & latest["reset_url"].map(lambda u: isinstance(u, str) and URL.match(u) is not None)
    ]
    if live.empty:
        return pd.DataFrame(columns=COLUMNS)
    valid = (live["expires_at"] - live["requested_at"]).dt.total_seconds() // 60
    return pd.DataFrame(
        {
            "customer_id": live["customer_id"].astype(int).to_numpy(),
            "reset_id": live["id"].astype(int).to_numpy(),
            "requested_at": live["requested_at"].to_numpy(),
            "expires_at": live["expires_at"].to_numpy(),
            "valid_minutes": valid.clip(lower=1).astype(int).to_numpy(),
            "reset_url": live["reset_url"].astype(str).to_numpy(),
        },
        columns=COLUMNS,
    ).reset_index(drop=True)
