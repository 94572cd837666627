"""Extract task: read the campaign's datasets from the shop DB."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from config.settings import get_settings
from shopmail.campaigns import Campaign
from shopmail.db import get_engine, is_transient_db_error
from shopmail.shop.extract import extract


def retry_if_transient(_task: object, _run: object, state: Any) -> bool:
    """Retry an extract only for a transient database error (unreachable, busy, dropped connection):
    a missing table or column, bad credentials or a missing shop file fail at once with their message."""
    try:
        state.result()
    except Exception as exc:
        return is_transient_db_error(exc)
    return False


RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "retry_condition_fn": retry_if_transient}


@task(name="extract-shop-data", cache_policy=NONE, **RETRIES)
def extract_shop_data(campaign: Campaign, as_of: date) -> dict[str, pd.DataFrame]:
    """Read every dataset the campaign declares, as it stood at the end of `as_of`."""
    settings = get_settings()
    engine = get_engine(settings.shop_url_resolved)
    return extract(
        engine,
        campaign.datasets,
        as_of,
        settings.tz,
        campaign.history_days,
        product_url=settings.product_url_template,
    )


@task(name="extract-shop-data", cache_policy=NONE, **RETRIES)
def extract_datasets(datasets: list[str], as_of: date, history_days: int) -> dict[str, pd.DataFrame]:
    """Read the named datasets once for several campaigns (the service poller)."""
    settings = get_settings()
    engine = get_engine(settings.shop_url_resolved)
    return extract(
        engine, datasets, as_of, settings.tz, history_days, product_url=settings.product_url_template
    )
