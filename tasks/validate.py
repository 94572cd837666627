"""Validate task: the Great Expectations gate and quarantine of bad rows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from config.settings import get_settings
from shopmail.run.campaign_check import gate_frames
from shopmail.shop.data_checks import GateReport, clean_frames, omitted_columns


class DataCheckFailed(RuntimeError):
    """A critical data check failed: nothing is sent."""


@task(name="validate-shop-data", cache_policy=NONE)
def validate_shop_data(
    frames: dict[str, pd.DataFrame], as_of: date | None = None, until: datetime | None = None
) -> GateReport:
    """Run the gate over every extracted dataset (`as_of`, `until`: the run day and its end, UTC; the
    orders' freshness is judged against the clock and SHOPMAIL_MAX_ORDER_AGE_DAYS)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    report = gate_frames(frames, as_of, get_settings(), now, until)
    for note in omitted_columns(report):  # e.g. no `language` column: everybody gets the default language
        get_run_logger().warning("%s", note)
    return report


def drop_quarantined(frames: dict[str, pd.DataFrame], report: GateReport) -> dict[str, pd.DataFrame]:
    """Frames without quarantined rows (and their orders' and carts' items), unknown values blanked."""
    return clean_frames(frames, report)
