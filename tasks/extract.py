"""Extract task: read the campaign's datasets from the shop DB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from config.settings import get_settings
from shopmail.campaigns import Campaign
from shopmail.db import get_engine, is_transient_db_error, safe_url
from shopmail.run.campaign_check import campaign_frames
from shopmail.shop.extract import extract
from shopmail.shop.lock_wait import is_lock_error, wait_while_locked

T = TypeVar("T")


def retry_if_transient(_task: object, _run: object, state: Any) -> bool:
    """Retry an extract only for a transient database error (unreachable, dropped connection): a
    missing table or column, bad credentials or a missing shop file fail at once with their message;
    locks were waited for already (`read_shop`)."""
    try:
        state.result()
    except Exception as exc:
        return is_transient_db_error(exc) and not is_lock_error(exc)
    return False


def read_shop(action: Callable[[], T]) -> T:
    """`action` (a read of the shop DB), waiting while another program holds it locked: a warning per
    try with how long so far, at most SHOPMAIL_SHOP_LOCK_WAIT_S in all (then `ShopDatabaseLocked`)."""
    settings = get_settings()
    return wait_while_locked(
        action,
        limit_s=settings.shop_lock_wait_s,
        warn=get_run_logger().warning,
        what=f"The shop database {safe_url(settings.shop_url_resolved)}",
    )


RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "retry_condition_fn": retry_if_transient}


@task(name="extract-shop-data", cache_policy=NONE, **RETRIES)
def extract_shop_data(campaign: Campaign, as_of: date) -> dict[str, pd.DataFrame]:
    """Read every dataset the campaign declares, as it stood at the end of `as_of`."""
    settings = get_settings()
    engine = get_engine(settings.shop_url_resolved)
    return read_shop(lambda: campaign_frames(engine, campaign, as_of, settings))


@task(name="extract-shop-data", cache_policy=NONE, **RETRIES)
def extract_datasets(datasets: list[str], as_of: date, history_days: int) -> dict[str, pd.DataFrame]:
    """Read the named datasets once for several campaigns (the service poller)."""
    settings = get_settings()
    engine = get_engine(settings.shop_url_resolved)
    return read_shop(
        lambda: extract(
            engine, datasets, as_of, settings.tz, history_days, product_url=settings.product_url_template
        )
    )
