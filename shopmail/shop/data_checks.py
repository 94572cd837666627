"""The Great Expectations gate over extracted datasets.

Each expectation has a severity:
- `critical`: a failure stops the run before any mail is sent;
- `quarantine`: the offending rows are set aside (reported, not mailed); if more than
  `max_bad_share` of a dataset is bad, the expectation fails and stops the run too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from shopmail.shop.schema import ORDER_STATUSES  # noqa: E402

EMAIL_REGEX = r"^[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$"
MAX_BAD_SHARE = 0.05
KEYS = {
    "customers": "id",
    "orders": "id",
    "products": "id",
    "order_items": "order_id",
    "carts": "id",
    "cart_items": "cart_id",
    "coupons": "code",
    "password_resets": "id",
}


def _critical(expectation: gxe.Expectation) -> gxe.Expectation:
    expectation.meta = {"severity": "critical"}
    return expectation


def _quarantine(expectation: gxe.Expectation) -> gxe.Expectation:
    expectation.meta = {"severity": "quarantine"}
    expectation.mostly = 1 - MAX_BAD_SHARE
    return expectation


def expectations_for(dataset: str) -> list[gxe.Expectation]:
    """The checks of one dataset of the shop data contract."""
    c, q = _critical, _quarantine
    if dataset == "customers":
        return [
            c(gxe.ExpectColumnValuesToNotBeNull(column="id")),
            c(gxe.ExpectColumnValuesToBeUnique(column="id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="registered_at")),
            q(gxe.ExpectColumnValuesToNotBeNull(column="email")),
            q(gxe.ExpectColumnValuesToMatchRegex(column="email", regex=EMAIL_REGEX)),
            q(gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["f", "m"])),
            q(gxe.ExpectColumnValuesToBeInSet(column="language", value_set=["ru", "en"])),
        ]
    if dataset == "orders":
        return [
            c(gxe.ExpectColumnValuesToBeUnique(column="id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="customer_id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="created_at")),
            q(gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(ORDER_STATUSES))),
            q(gxe.ExpectColumnValuesToBeBetween(column="total", min_value=0)),
        ]
    if dataset == "order_items":
        return [
            c(gxe.ExpectColumnValuesToNotBeNull(column="product_id")),
            q(gxe.ExpectColumnValuesToBeBetween(column="qty", min_value=1)),
            q(gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0)),
        ]
    if dataset == "products":
        return [
            c(gxe.ExpectColumnValuesToBeUnique(column="id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="url")),
            q(gxe.ExpectColumnValuesToNotBeNull(column="name")),
            q(gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True)),
        ]
    if dataset == "carts":
        return [
            c(gxe.ExpectColumnValuesToBeUnique(column="id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="customer_id")),
            q(gxe.ExpectColumnValuesToNotBeNull(column="updated_at")),
        ]
    if dataset == "cart_items":
        return [
            c(gxe.ExpectColumnValuesToNotBeNull(column="product_id")),
            q(gxe.ExpectColumnValuesToBeBetween(column="qty", min_value=1)),
        ]
    if dataset == "coupons":
        return [
            c(gxe.ExpectColumnValuesToBeUnique(column="code")),
            q(gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0, strict_min=True)),
            q(gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=["coupon", "bonus"])),
        ]
    if dataset == "password_resets":  # reset_url is a secret: checked by pattern, never listed
        return [
            c(gxe.ExpectColumnValuesToBeUnique(column="id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="customer_id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="requested_at")),
            q(gxe.ExpectColumnValuesToNotBeNull(column="expires_at")),
            q(gxe.ExpectColumnValuesToMatchRegex(column="reset_url", regex=r"^https?://\S+$")),
        ]
    return []


@dataclass
class CheckResult:
    dataset: str
    check: str
    column: str
    severity: str
    success: bool
    unexpected: int
    rows: int


@dataclass
class GateReport:
    """What the gate found: per-check results and the row keys to quarantine."""

    results: list[CheckResult] = field(default_factory=list)
    quarantine: dict[str, dict[Any, list[str]]] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success]

    @property
    def success(self) -> bool:
        return not self.failures

    @property
    def quarantined_count(self) -> int:
        return sum(len(rows) for rows in self.quarantine.values())

    def quarantined_keys(self, dataset: str) -> set[Any]:
        return set(self.quarantine.get(dataset, {}))

    def markdown(self) -> str:
        lines = [
            "| dataset | check | column | severity | rows | unexpected | result |",
            "|---|---|---|---|---:|---:|---|",
        ]
        for r in self.results:
            verdict = "ok" if r.success else "**FAILED**"
            lines.append(
                f"| {r.dataset} | {r.check} | {r.column} | {r.severity} | {r.rows} "
                f"| {r.unexpected} | {verdict} |"
            )
        return "\n".join(lines)

    def failure_text(self) -> str:
        return "; ".join(
            f"{r.dataset}.{r.column}: {r.check} ({r.unexpected} of {r.rows} rows, {r.severity})"
            for r in self.failures
        )


@lru_cache(maxsize=1)
def _context() -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _batch_definition(dataset: str) -> Any:
    context = _context()
    try:
        source = context.data_sources.get("shop")
    except (KeyError, ValueError, LookupError):
        source = context.data_sources.add_pandas("shop")
    try:
        asset = source.get_asset(dataset)
    except (KeyError, ValueError, LookupError):
        asset = source.add_dataframe_asset(dataset)
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, ValueError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole")


def validate_dataset(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """Run the dataset's suite and add its results and quarantined keys to `report`."""
    expectations = expectations_for(dataset)
    if not expectations or frame.empty:
        return
    suite = gx.ExpectationSuite(name=f"shop_{dataset}", expectations=expectations)
    frame = frame.reset_index(drop=True)
    batch = _batch_definition(dataset).get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    key_column = KEYS.get(dataset)
    for item in result.results:
        config = item.expectation_config
        severity = (config.meta or {}).get("severity", "critical")
        column = config.kwargs.get("column", "")
        details = item.result or {}
        unexpected = int(details.get("unexpected_count") or 0)
        report.results.append(
            CheckResult(dataset, config.type, column, severity, bool(item.success), unexpected, len(frame))
        )
        if severity == "quarantine" and unexpected and key_column:
            indexes = details.get("unexpected_index_list") or []
            keys = frame.loc[list(indexes), key_column].tolist() if indexes else []
            bucket = report.quarantine.setdefault(dataset, {})
            for key in keys:
                bucket.setdefault(key, []).append(f"{column}:{config.type}")


def run_gate(frames: dict[str, pd.DataFrame]) -> GateReport:
    """Validate every extracted dataset; the caller stops the run if `report.success` is False."""
    report = GateReport()
    for dataset, frame in frames.items():
        validate_dataset(dataset, frame, report)
    return report
