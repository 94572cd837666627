"""Validate task: the Great Expectations gate and quarantine of bad rows."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from shopmail.shop.data_checks import KEYS, GateReport, run_gate


class DataCheckFailed(RuntimeError):
    """A critical data check failed: nothing is sent."""


@task(name="validate-shop-data", cache_policy=NONE)
def validate_shop_data(frames: dict[str, pd.DataFrame]) -> GateReport:
    """Run the gate over every extracted dataset."""
    return run_gate(frames)


def drop_quarantined(frames: dict[str, pd.DataFrame], report: GateReport) -> dict[str, pd.DataFrame]:
    """Frames without quarantined rows and the items of quarantined orders and carts (customers
    are filtered later, so an affected recipient is reported as skipped with reason `quarantined`)."""
    cleaned = dict(frames)
    for name in ("orders", "order_items", "products", "carts", "cart_items", "coupons", "password_resets"):
        bad = report.quarantined_keys(name)
        if name in cleaned and bad:
            cleaned[name] = cleaned[name][~cleaned[name][KEYS[name]].isin(list(bad))]
    for parent, child, column in (("orders", "order_items", "order_id"), ("carts", "cart_items", "cart_id")):
        bad = report.quarantined_keys(parent)
        if child in cleaned and bad:
            cleaned[child] = cleaned[child][~cleaned[child][column].isin(list(bad))]
    return cleaned
