"""Each customer's preferred hour to get mail, and the `send_at` that delivers it then (pure).

**The hour.** The local hours (the customer's own time zone) of the moments they were seen active,
their orders and, where the results loop has them, their clicks, averaged on the 24-hour clock (a
circular mean: 23:00 and 01:00 average to midnight, not noon). With little data the estimate is
pulled toward a prior, the hour of their group (the segment or the whole shop, the same circular
mean over everyone's moments): the customer's `n` moments count as `n` unit vectors, the prior as
`prior_weight` of them. Without any moment the customer gets the prior itself (the fallback), and
without any data at all the shop's `default_hour`.

**The moment.** `preferred_send_at` is the next time the clock shows that hour in the customer's zone
(zoneinfo, so a daylight-saving change moves the UTC moment, never the local hour), moved to the end
of the quiet hours when the hour falls inside them, and never more than SendGrid's 72 hours ahead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.quiet_hours import QuietHours

SEND_HOUR_COLUMN = "send_hour"  # the recipients' preferred local hour (nullable: the fixed-hour group)
SENDGRID_MAX_AHEAD = timedelta(hours=72)
DEFAULT_HOUR = 10  # local hour for a shop without any order or click yet
PRIOR_WEIGHT = 3.0  # a customer with 3 moments weighs as much as the prior


def _angles(hours: np.ndarray) -> np.ndarray:
    return hours / 24.0 * 2 * math.pi


def _hour_of(x: float, y: float, default: float) -> float:
    if math.hypot(x, y) < 1e-9:
        return default
    return (math.degrees(math.atan2(y, x)) / 15.0) % 24


def local_hours(moments: pd.Series, zones: pd.Series) -> pd.Series:
    """Fractional local hour (0-24) of each naive-UTC moment in its row's IANA zone."""
    out = pd.Series(np.nan, index=moments.index, dtype=float)
    stamps = pd.to_datetime(moments)
    for zone in pd.unique(zones):
        rows = zones == zone
        local = stamps[rows].dt.tz_localize("UTC").dt.tz_convert(ZoneInfo(str(zone)))
        out[rows] = local.dt.hour + local.dt.minute / 60.0
    return out


def circular_hour(hours: pd.Series, default: float) -> float:
    """The circular mean hour of `hours` (default when there are none)."""
    values = hours.dropna().to_numpy(dtype=float)
    if not len(values):
        return default
    angles = _angles(values)
    return _hour_of(float(np.cos(angles).sum()), float(np.sin(angles).sum()), default)


def preferred_hours(
    moments: pd.DataFrame,
    customer_ids: pd.Series,
    zones: pd.Series,
    groups: pd.Series | None = None,
    default_hour: float = DEFAULT_HOUR,
    prior_weight: float = PRIOR_WEIGHT,
    default_zone: str = "UTC",
) -> pd.Series:
    """Each customer's preferred whole hour (0-23, their local time), aligned with `customer_ids`.

    moments: customer_id, at (naive UTC) - orders and clicks; zones: each customer's IANA zone
    (aligned with `customer_ids`); groups: each customer's segment (aligned; None: one group, the shop).
    The shop's hour counts every moment given, also other customers' (in `default_zone`)."""
    zone_of = pd.Series(zones.to_numpy(), index=customer_ids.to_numpy())
    zone_of = zone_of[~zone_of.index.duplicated()]
    seen = moments.copy()
    zone_each = seen["customer_id"].map(zone_of).fillna(default_zone)
    seen["hour"] = local_hours(seen["at"], zone_each) if len(seen) else []
    shop_hour = circular_hour(seen["hour"], default_hour)
    seen = seen[seen["customer_id"].isin(zone_of.index)]
    group_of = (
        pd.Series(groups.to_numpy(), index=customer_ids.to_numpy())
        if groups is not None
        else pd.Series("shop", index=customer_ids.to_numpy())
    )
    group_of = group_of[~group_of.index.duplicated()]
    seen["group"] = seen["customer_id"].map(group_of)
    group_hour = (
        {g: circular_hour(part["hour"], shop_hour) for g, part in seen.groupby("group")}
        if groups is not None
        else {}
    )
    angles = _angles(seen["hour"].to_numpy(dtype=float))
    seen["x"], seen["y"] = np.cos(angles), np.sin(angles)
    sums = seen.groupby("customer_id")[["x", "y"]].sum()
    hours = []
    for cid in customer_ids:
        prior = group_hour.get(group_of.get(cid), shop_hour)
        px, py = math.cos(_angles(np.array([prior]))[0]), math.sin(_angles(np.array([prior]))[0])
        x, y = (sums.at[cid, "x"], sums.at[cid, "y"]) if cid in sums.index else (0.0, 0.0)
        hour = _hour_of(x + prior_weight * px, y + prior_weight * py, prior)
        hours.append(int(round(hour)) % 24)
    return pd.Series(hours, index=customer_ids.index, dtype="int64")


def _local_moment(day: datetime, hour: int, zone: ZoneInfo) -> datetime:
    """`hour`:00 local on `day`'s date in `zone`, normalised (a time skipped by a DST change becomes
    the first valid moment after it)."""
    naive = datetime.combine(day.date(), time(hour))
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


def preferred_send_at(
    zone: str, hour: int, now: datetime, quiet: QuietHours | None, max_ahead: timedelta = SENDGRID_MAX_AHEAD
) -> int | None:
    """Unix time of the next `hour`:00 in `zone` after `now` (naive UTC or aware), moved out of the
    quiet hours; None (send now) when that moment is now or has just passed this minute."""
    tz = ZoneInfo(zone)
    current = (now.replace(tzinfo=UTC) if now.tzinfo is None else now).astimezone(tz)
    moment = _local_moment(current, hour, tz)
    if moment < current - timedelta(minutes=1):
        moment = _local_moment(current + timedelta(days=1), hour, tz)
    if quiet is not None and (end := quiet.next_allowed(moment)) is not None:
        moment = end.replace(tzinfo=None).replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
    if moment <= current:
        return None
    return int(min(moment, current + max_ahead).timestamp())


def hours_map(customer_ids: pd.Series, hours: pd.Series) -> Mapping[int, int]:
    return dict(zip(customer_ids.astype(int), hours.astype(int), strict=True))
