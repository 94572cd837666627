"""Validate task: the Great Expectations gate and quarantine of bad rows."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from shopmail.data_checks import KEYS, GateReport, run_gate


class DataCheckFailed(RuntimeError):
    """A critical data check failed: nothing is sent."""


@task(name="validate-shop-data", cache_policy=NONE)
def validate_shop_data(frames: dict[str, pd.DataFrame]) -> GateReport:
    """Run the gate over every extracted dataset."""
    return run_gate(frames)


def drop_quarantined(frames: dict[str, pd.DataFrame], report: GateReport) -> dict[str, pd.DataFrame]:
    """Frames without quarantined orders, items and products (customers are filtered later,
    so an affected recipient is reported as skipped with reason `quarantined`)."""
    cleaned = dict(frames)
    for name in ("orders", "order_items", "products"):
        bad = report.quarantined_keys(name)
        if name in cleaned and bad:
            cleaned[name] = cleaned[name][~cleaned[name][KEYS[name]].isin(list(bad))]
    bad_orders = report.quarantined_keys("orders")
    if "order_items" in cleaned and bad_orders:
        items = cleaned["order_items"]
        cleaned["order_items"] = items[~items["order_id"].isin(list(bad_orders))]
    return cleaned
