"""Registry of audience builders that campaign files name in `audience = "..."`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from segments.audiences.abandoned_cart import abandoned_cart_audience
from segments.audiences.birthday import birthday_audience
from segments.audiences.coupon_expiry import coupon_expiry_audience
from segments.audiences.followup import followup_basic_audience, followup_detailed_audience
from segments.audiences.holiday import holiday_audience
from segments.audiences.name_day import name_day_audience
from segments.audiences.new_arrivals import new_arrivals_audience
from segments.audiences.order_cancelled import order_cancelled_audience
from segments.audiences.order_status import order_status_audience
from segments.audiences.password_reset import password_reset_audience
from segments.audiences.review_request import review_request_audience
from segments.audiences.sale import sale_audience
from segments.audiences.wakeup import wakeup_audience
from segments.audiences.welcome import welcome_audience

AudienceBuilder = Callable[..., pd.DataFrame]

AUDIENCES: dict[str, AudienceBuilder] = {
    "wakeup": wakeup_audience,
    "new_arrivals": new_arrivals_audience,
    "abandoned_cart": abandoned_cart_audience,
    "coupon_expiry": coupon_expiry_audience,
    "birthday": birthday_audience,
    "holiday": holiday_audience,
    "followup_detailed": followup_detailed_audience,
    "followup_basic": followup_basic_audience,
    "name_day": name_day_audience,
    "order_cancelled": order_cancelled_audience,
    "welcome": welcome_audience,
    "password_reset": password_reset_audience,
    "order_status": order_status_audience,
    "review_request": review_request_audience,
    "sale": sale_audience,
}


def build_audience(
    name: str,
    frames: dict[str, pd.DataFrame],
    as_of: date,
    tz: ZoneInfo,
    params: dict[str, Any],
    window: tuple[datetime, datetime] | None = None,
) -> pd.DataFrame:
    """Run the named builder; it returns one row per recipient with at least `customer_id`.

    `window` (naive UTC [since, until)) is given to event-driven builders (polled service mails);
    without it they take the whole shop-local day `as_of`.
    """
    if name not in AUDIENCES:
        raise KeyError(f"unknown audience '{name}'; known: {', '.join(AUDIENCES)}")
    if window is not None:
        params = {**params, "window": window}
    audience = AUDIENCES[name](frames, as_of, tz, **params)
    if "customer_id" not in audience.columns:
        raise ValueError(f"audience '{name}' must return a customer_id column")
    return audience
