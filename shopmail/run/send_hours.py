"""Send time (campaign file `send_time = "preferred"`): each recipient's preferred local hour and the
comparison group they are in (rules in segments/preferred_hour.py).

A stable `send_time_fixed_percent` of the customers (per campaign) keep the fixed hour (the mail goes
when the run sends it, quiet hours aside); the others get `send_hour`, which the composer turns into
SendGrid's `send_at`. Each mail's group is its `test_variant` ("fixed hour" / "preferred hour"): the
results report (`shopmail report`, by variant) shows both side by side.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from config.settings import Settings
from segments.holdout import unit_bucket
from segments.preferred_hour import DEFAULT_HOUR, SEND_HOUR_COLUMN, preferred_hours
from segments.send_time import ZONE_COLUMN
from shopmail.campaigns import Campaign
from shopmail.state.schema import provider_events
from shopmail.state.state_db import utcnow

FIXED, PREFERRED = "fixed hour", "preferred hour"
LOOKBACK_DAYS = 365


def click_moments(state: Engine, customer_ids: list[int], since: datetime) -> pd.DataFrame:
    """Every click (any campaign) of these customers since `since`: customer_id, at (naive UTC)."""
    e = provider_events.c
    wanted = sorted(set(customer_ids))
    rows: list[tuple] = []
    with state.connect() as conn:
        for start in range(0, len(wanted), 900):
            rows += conn.execute(
                select(e.customer_id, e.occurred_at).where(
                    e.event == "click", e.customer_id.in_(wanted[start : start + 900]), e.occurred_at >= since
                )
            ).all()
    return pd.DataFrame(rows, columns=["customer_id", "at"])


def with_send_hours(
    campaign: Campaign,
    rows: pd.DataFrame,
    orders: pd.DataFrame | None,
    state: Engine,
    settings: Settings,
) -> pd.DataFrame:
    """`rows` (customer_id, local_tz) with `send_hour` (nullable: the fixed-hour group) and
    `test_variant` (the group's name)."""
    if rows.empty:
        return rows.assign(
            **{SEND_HOUR_COLUMN: pd.Series(dtype="Int64"), "test_variant": pd.Series(dtype=object)}
        )
    ids = rows["customer_id"].astype(int)
    fixed = unit_bucket(f"send-time:{campaign.name}", ids.to_numpy()) * 100 < campaign.send_time_fixed_percent
    since = utcnow() - timedelta(days=LOOKBACK_DAYS)
    parts = [click_moments(state, ids.tolist(), since)]
    if orders is not None and len(orders):
        parts.append(orders[["customer_id", "created_at"]].rename(columns={"created_at": "at"}))
    moments = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    )
    groups = rows["segment"] if "segment" in rows.columns else None
    hours = preferred_hours(
        moments, ids, rows[ZONE_COLUMN], groups, default_hour=DEFAULT_HOUR, default_zone=settings.timezone
    )
    out = rows.copy()
    out[SEND_HOUR_COLUMN] = pd.array(np.where(fixed, None, hours.to_numpy()), dtype="Int64")
    out["test_variant"] = np.where(fixed, FIXED, PREFERRED)
    return out
