"""The Great Expectations gate over extracted datasets, plus checks across datasets (pandas).

Each check has a severity, by one rule:
- `critical`: the whole dataset cannot be trusted (a key missing or duplicated, a required reference
  NULL, an empty `customers` or `products` table): a failure stops the run before anything is sent;
- `quarantine`: one row is impossible on its own or against the others (broken address, a time that
  does not parse, a status history out of order, a reference to a missing row, a time in the future):
  the row is set aside (reported, never mailed, never built on); if more than `MAX_BAD_SHARE` of a
  dataset is bad, the mapping is probably wrong and the check fails (stops the run) too;
- `unknown`: an optional value is impossible (a birth date that does not parse, or an age outside
  `PLAUSIBLE_AGE`), a language the templates do not have, a MySQL zero date, a NULL registration
  time: the value is treated as unknown (no birthday mail, the default language), the row stays; reported.

Small tables: a quarantine check fails only when more than `MAX_BAD_SHARE` of the rows **and** more
than `MIN_BAD_ROWS` rows are bad (one bad coupon of five is set aside, it does not stop the run).
Plausibility (critical): a contract timestamp column that is NULL in every row, orders in the future
of a run for today (time-zone skew), a newest order older than `max_order_age_days` (stale replica).
Failure messages name the values found (top few, with counts) and the values allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

import pandas as pd
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# Great Expectations (about 8 s to import on a busy machine) is imported when a data check first runs,
# not with this module: commands and flows that check nothing never pay for it.

from config.addresses import address_problem  # noqa: E402
from config.urls import url_problem  # noqa: E402
from shopmail.shop.contract import DATASETS, LANGUAGES  # noqa: E402
from shopmail.shop.extract import (  # noqa: E402
    DEFAULTED,
    LANGUAGE_TAGS,
    LATER_ROWS,
    LATEST_ORDER,
    NEWEST_ORDER,
    NOT_NUMBERS,
    NULL_CREATED,
    NUMBER_EXAMPLES,
    TEXT_LIMITED,
    UNPARSABLE,
    UNREADABLE_TIMES,
    ZERO_DATES,
)
from shopmail.shop.schema import ORDER_STATUSES  # noqa: E402

MAX_BAD_SHARE = 0.05
MIN_BAD_ROWS = 5  # at most this many bad rows never fail a quarantine check (small tables)
TOP_VALUES = 5  # values named per failure message
CLOCK_SKEW = timedelta(minutes=5)  # status times this much out of order are still in order
FUTURE_SKEW = timedelta(hours=1)  # times later than the end of the run day plus this are impossible
PLAUSIBLE_AGE = (5, 110)  # years on the run day; other birth dates are treated as unknown
REQUIRED_TABLES = ("customers", "products")  # empty when extracted: the mapping is broken
OPTIONAL_TIMES = {("customers", "birth_date")}  # unparsable: unknown, not quarantined
NOT_IN_FUTURE_EXEMPT = {"expires_at", "birth_date"}  # expiry times are in the future by design
# status times that follow each other on the happy path (paid may come at any point: cash on delivery)
STATUS_CHAIN = ("received_at", "accepted_at", "shipped_at", "delivered_at")
REFERENCES = (  # (dataset, column, referenced dataset, its key)
    ("orders", "customer_id", "customers", "id"),
    ("order_items", "order_id", "orders", "id"),
    ("order_items", "product_id", "products", "id"),
    ("carts", "customer_id", "customers", "id"),
    ("cart_items", "cart_id", "carts", "id"),
    ("cart_items", "product_id", "products", "id"),
    ("coupons", "customer_id", "customers", "id"),
    ("password_resets", "customer_id", "customers", "id"),
)
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


def _critical(expectation: Any) -> Any:
    expectation.meta = {"severity": "critical"}
    return expectation


def _quarantine(expectation: Any) -> Any:
    expectation.meta = {"severity": "quarantine"}
    expectation.mostly = 1 - MAX_BAD_SHARE
    return expectation


def expectations_for(dataset: str) -> list[Any]:
    """The checks of one dataset of the shop data contract (Great Expectations expectations)."""
    import great_expectations.expectations as gxe

    c, q = _critical, _quarantine
    if dataset == "customers":
        return [
            c(gxe.ExpectColumnValuesToNotBeNull(column="id")),
            c(gxe.ExpectColumnValuesToBeUnique(column="id")),
            q(gxe.ExpectColumnValuesToNotBeNull(column="email")),  # the address itself: check_addresses
            q(gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["f", "m"])),
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
            q(gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0)),  # 0: free shipping
            q(gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=["coupon", "bonus"])),
        ]
    if dataset == "password_resets":  # reset_url is a secret: checked by pattern, never listed
        return [
            c(gxe.ExpectColumnValuesToBeUnique(column="id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="customer_id")),
            c(gxe.ExpectColumnValuesToNotBeNull(column="requested_at")),
            q(gxe.ExpectColumnValuesToNotBeNull(column="expires_at")),  # reset_url: check_links
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
    message: str = ""  # what to do, for checks whose name alone does not say it


@dataclass
class GateReport:
    """What the gate found: per-check results and the row keys to quarantine."""

    results: list[CheckResult] = field(default_factory=list)
    quarantine: dict[str, dict[Any, list[str]]] = field(default_factory=dict)
    # values treated as unknown: {dataset: {column: [row keys]}}
    unknown: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

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

    def failure_text(self) -> str:
        """The failed checks, causes first: values that do not parse or lie in the future come before
        the checks they break (references to the rows set aside)."""
        return "; ".join(
            r.message or f"{r.dataset}.{r.column}: {r.check} ({r.unexpected} of {r.rows} rows, {r.severity})"
            for r in sorted(self.failures, key=_cause_rank)
        )

    def findings(self) -> dict[str, int]:
        """Rows found per `dataset.column: check` (non-zero only), for logs and summaries."""
        return {f"{r.dataset}.{r.column}: {r.check}": r.unexpected for r in self.results if r.unexpected}

    def add(self, result: CheckResult, keys: list[Any] = (), reasons: list[str] | None = None) -> None:
        """Record a pandas check: its result and, by severity, the keys to quarantine or blank
        (`reasons`: why each key's row is set aside, stored with it)."""
        self.results.append(result)
        label = f"{result.column}:{result.check}"
        if result.severity == "quarantine":
            bucket = self.quarantine.setdefault(result.dataset, {})
            for i, key in enumerate(keys):
                bucket.setdefault(key, []).append(f"{label} ({reasons[i]})" if reasons else label)
        elif result.severity == "unknown" and len(keys):
            column = self.unknown.setdefault(result.dataset, {}).setdefault(result.column, [])
            column.extend(keys)


ROOT_CHECKS = ("parsable_time", "parsable_number", "not_in_future")  # causes other checks' failures show


def _cause_rank(result: CheckResult) -> int:
    if result.check in ROOT_CHECKS:
        return 0
    return 2 if result.check.startswith("references_") else 1


@cache
def suite_for(dataset: str) -> Any | None:
    """The dataset's expectation suite, built once per process (None: the dataset has no checks)."""
    import great_expectations as gx

    expectations = expectations_for(dataset)
    return gx.ExpectationSuite(name=f"shop_{dataset}", expectations=expectations) if expectations else None


@lru_cache(maxsize=1)
def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

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
    """Run the dataset's suite and add its results and quarantined keys to `report` (rows whose times
    did not parse are quarantined by `check_unparsable`, not judged again here)."""
    suite = suite_for(dataset)
    unparsable = _unparsable_rows(dataset, frame) | _not_number_rows(frame)
    if unparsable:
        frame = frame.drop(index=list(unparsable))
    if suite is None or frame.empty:
        return
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
        indexes = details.get("unexpected_index_list") or []
        success = _share_ok(unexpected, len(frame)) if severity == "quarantine" else bool(item.success)
        found = _top_values(frame.loc[list(indexes), column]) if indexes and column in frame.columns else ""
        allowed = config.kwargs.get("value_set")
        result_ = CheckResult(dataset, config.type, column, severity, success, unexpected, len(frame))
        if unexpected:
            result_.message = _describe(result_, found, allowed, dataset == "password_resets")
        report.results.append(result_)
        if severity == "quarantine" and unexpected and key_column:
            keys = frame.loc[list(indexes), key_column].tolist() if indexes else []
            bucket = report.quarantine.setdefault(dataset, {})
            for key in keys:
                bucket.setdefault(key, []).append(f"{column}:{config.type}")


def _share_ok(bad: int, rows: int) -> bool:
    """A quarantine check holds while the bad rows are few: at most `MIN_BAD_ROWS`, or at most
    `MAX_BAD_SHARE` of the rows."""
    return bad <= MIN_BAD_ROWS or bad <= MAX_BAD_SHARE * rows


def _top_values(values: pd.Series) -> str:
    """The most frequent values, with counts: "'de' (3), 'xx' (1)"."""
    counts = values.astype(object).where(values.notna(), None).map(repr).value_counts().head(TOP_VALUES)
    return ", ".join(f"{value} ({count})" for value, count in counts.items())


def _describe(result: CheckResult, found: str, allowed: Any = None, secret: bool = False) -> str:
    """One failure sentence: where, what, how many, which values were found and which are allowed."""
    text = (
        f"{result.dataset}.{result.column}: {result.check} ({result.unexpected} of {result.rows} rows, "
        f"{result.severity})"
    )
    if found and allowed and not secret:  # value-set checks only: no address or link in a message
        text += f"; found {found}"
    if allowed:
        text += f"; allowed: {', '.join(map(str, allowed))}"
    return text


def _keys(frame: pd.DataFrame, dataset: str, mask: pd.Series | Any) -> list[Any]:
    return frame.loc[mask, KEYS[dataset]].tolist()


def _unparsable_rows(dataset: str, frame: pd.DataFrame) -> set[Any]:
    """Row labels whose quarantinable time columns did not parse (from `extract`)."""
    found = frame.attrs.get(UNPARSABLE) or {}
    return {
        label
        for column, labels in found.items()
        if (dataset, column) not in OPTIONAL_TIMES
        for label in labels
    }


def check_unparsable(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """Times that did not parse ('yesterday', '2026-13-45'): quarantine the row (unknown for optional
    columns such as the birth date)."""
    for column, labels in (frame.attrs.get(UNPARSABLE) or {}).items():
        labels = [label for label in labels if label in frame.index]
        if not labels:
            continue
        optional = (dataset, column) in OPTIONAL_TIMES
        severity = "unknown" if optional else "quarantine"
        ok = optional or _share_ok(len(labels), len(frame))
        keys = frame.loc[labels, KEYS[dataset]].tolist()
        report.add(CheckResult(dataset, "parsable_time", column, severity, ok, len(labels), len(frame)), keys)


def check_mapping(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """A dataset the mapping empties (critical: the run stops with the reason instead of "sent 0 of 0"):
    read empty while its table has rows whose times are not times (text the SQL filter cannot compare,
    `extract` lists examples), or a required column NULL in every row (a status mapping returning
    nothing)."""
    for column, examples in (frame.attrs.get(UNREADABLE_TIMES) or {}).items():
        shown = ", ".join(repr(e) for e in examples)
        result = CheckResult(dataset, "times_readable", column, "critical", False, 0, 0)
        result.message = (
            f"{dataset}.{column}: no value reads as a time (e.g. {shown}), so every row was left out of the "
            "run: the view must return DATETIME/TIMESTAMP values or ISO 8601 text ('2026-11-13 04:07:00')"
        )
        report.results.append(result)
    if frame.empty or dataset not in DATASETS:
        return
    for spec in DATASETS[dataset].columns:
        if not spec.required or spec.type == "timestamp" or spec.name not in frame.columns:
            continue  # NULL times: `check_times_present`
        if frame[spec.name].isna().all():
            rows = len(frame)
            result = CheckResult(dataset, "not_all_null", spec.name, "critical", False, rows, rows)
            result.message = (
                f"{dataset}.{spec.name} is NULL in all {len(frame)} rows: the view's mapping returns "
                "nothing for it (a status or field mapping that matches no value?)"
            )
            report.results.append(result)


def check_required(dataset: str, frame: pd.DataFrame, report: GateReport, as_of: date | None) -> None:
    """An empty `customers` or `products` table: the shop DB or its mapping is wrong (critical)."""
    if dataset not in REQUIRED_TABLES or not frame.empty:
        return
    when = f" as of {as_of.isoformat()}" if as_of else ""
    message = (
        f"the {dataset} table is empty{when}: check SHOPMAIL_SHOP_DB_URL points at the shop database and "
        f"that the table or view `{dataset}` maps the shop's {dataset} (shopmail/shop/schema.py)"
    )
    report.add(CheckResult(dataset, "table_not_empty", "", "critical", False, 0, 0, message))


def check_status_history(frame: pd.DataFrame, report: GateReport) -> None:
    """Status times out of order (delivered before shipped, any status before the order was created,
    beyond `CLOCK_SKEW`): quarantine the order."""
    if frame.empty or "created_at" not in frame.columns:
        return
    bad = pd.Series(False, index=frame.index)
    for column in [c for c in frame.columns if c.endswith("_at") and c != "created_at"]:
        bad |= frame[column] < frame["created_at"] - CLOCK_SKEW
    chain = [c for c in STATUS_CHAIN if c in frame.columns]
    for i, earlier in enumerate(chain):
        for later in chain[i + 1 :]:
            bad |= frame[later] < frame[earlier] - CLOCK_SKEW
    count = int(bad.sum())
    result = CheckResult(
        "orders",
        "status_history_in_order",
        "status",
        "quarantine",
        _share_ok(count, len(frame)),
        count,
        len(frame),
    )
    report.add(result, _keys(frame, "orders", bad))


def check_references(frames: dict[str, pd.DataFrame], report: GateReport) -> None:
    """Rows referring to a customer, order, product or cart that is not in the shop data: quarantine
    the referring row (checked when both datasets were extracted; NULL references are other checks')."""
    for dataset, column, target, key in REFERENCES:
        if dataset not in frames or target not in frames or column not in frames[dataset].columns:
            continue
        frame = frames[dataset]
        if frame.empty:
            continue
        bad = frame[column].notna() & ~frame[column].isin(frames[target][key])
        count = int(bad.sum())
        result = CheckResult(
            dataset,
            f"references_{target}",
            column,
            "quarantine",
            _share_ok(count, len(frame)),
            count,
            len(frame),
        )
        later = frames[target].attrs.get(LATER_ROWS) or {}
        if count and later.get("count"):  # the cause is named by its own check, first
            result.message = (
                f"{dataset}.{column}: references_{target} ({count:,} of {len(frame):,} rows, quarantine), "
                f"e.g. to {target} left out as in the future ({target}.{later['column']})"
            )
        report.add(result, _keys(frame, dataset, bad))


def check_not_in_future(dataset: str, frame: pd.DataFrame, report: GateReport, until: datetime) -> None:
    """Times later than the end of the run day (+ `FUTURE_SKEW`): quarantine the row."""
    limit = pd.Timestamp(until + FUTURE_SKEW)
    for column in [c for c in frame.columns if c.endswith("_at") and c not in NOT_IN_FUTURE_EXEMPT]:
        if frame.empty or not pd.api.types.is_datetime64_any_dtype(frame[column]):
            continue
        bad = frame[column] > limit
        count = int(bad.sum())
        if count:
            ok = _share_ok(count, len(frame))
            report.add(
                CheckResult(dataset, "not_in_future", column, "quarantine", ok, count, len(frame)),
                _keys(frame, dataset, bad),
            )


def check_birth_dates(frame: pd.DataFrame, report: GateReport, as_of: date) -> None:
    """Birth dates giving an age outside `PLAUSIBLE_AGE` on the run day (1800, next year): unknown."""
    if frame.empty or "birth_date" not in frame.columns:
        return
    born = frame["birth_date"]
    day = pd.Timestamp(as_of)
    low, high = PLAUSIBLE_AGE
    bad = born.notna() & (
        (born > day - pd.DateOffset(years=low)) | (born < day - pd.DateOffset(years=high + 1))
    )
    count = int(bad.sum())
    report.add(
        CheckResult("customers", "plausible_age", "birth_date", "unknown", True, count, len(frame)),
        _keys(frame, "customers", bad),
    )


def check_languages(frame: pd.DataFrame, report: GateReport) -> None:
    """Languages the templates do not have ('de'): the default language instead (unknown, reported
    with the tags found); tags normalised by `extract` ('ru-RU' -> 'ru') are reported too."""
    if frame.empty or "language" not in frame.columns:
        return
    language = frame["language"]
    bad = language.notna() & ~language.isin(LANGUAGES)
    count = int(bad.sum())
    result = CheckResult("customers", "language_known", "language", "unknown", True, count, len(frame))
    if count:
        result.message = (
            f"customers.language: {count} of {len(frame)} customers have a language without templates, "
            f"they get the default language; found {_top_values(language[bad])}; "
            f"allowed: {', '.join(LANGUAGES)}"
        )
    report.add(result, _keys(frame, "customers", bad))
    tags = frame.attrs.get(LANGUAGE_TAGS) or {}
    if tags:
        shown = ", ".join(f"{tag!r} ({n})" for tag, n in list(tags.items())[:TOP_VALUES])
        normalised = CheckResult(
            "customers", "language_normalised", "language", "unknown", True, sum(tags.values()), len(frame)
        )
        normalised.message = f"customers.language: tags read as their primary language: {shown}"
        report.results.append(normalised)


def check_zero_dates(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """MySQL zero dates ('0000-00-00'): read as NULL by `extract`; reported, never a failure."""
    for column, count in (frame.attrs.get(ZERO_DATES) or {}).items():
        result = CheckResult(dataset, "zero_date_as_null", column, "unknown", True, int(count), len(frame))
        result.message = f"{dataset}.{column}: {count} zero dates ('0000-00-00') read as NULL"
        report.results.append(result)


def check_times_present(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """A required timestamp column NULL in every row (a view whose CONVERT_TZ returns NULL, a wrong
    mapping): nothing could ever be selected, so the run stops (critical). Some NULL registration
    times are unknown values (reported)."""
    if frame.empty or dataset not in DATASETS:
        return
    for spec in DATASETS[dataset].columns:
        if spec.type != "timestamp" or not spec.required or spec.name not in frame.columns:
            continue
        nulls = frame[spec.name].isna()
        if nulls.all():
            result = CheckResult(
                dataset, "not_all_null", spec.name, "critical", False, len(frame), len(frame)
            )
            result.message = (
                f"{dataset}.{spec.name} is NULL in all {len(frame)} rows: check the view (a time-zone "
                "conversion such as CONVERT_TZ returns NULL without the server's time-zone tables)"
            )
            report.results.append(result)
        elif dataset == "customers" and spec.name == "registered_at" and nulls.any():
            result = CheckResult(
                dataset, "not_null", spec.name, "unknown", True, int(nulls.sum()), len(frame)
            )
            result.message = f"customers.registered_at: {int(nulls.sum())} customers without a time (unknown)"
            report.results.append(result)


def check_freshness(
    frame: pd.DataFrame, report: GateReport, until: datetime, now: datetime, max_age_days: int | None
) -> None:
    """The orders table as a whole (facts `extract` reads: newest order, latest, NULL times): every
    order without a time, a newest order older than `max_age_days`, or orders in the future of a run
    for today (the view's times are not UTC) stop the run."""
    if NEWEST_ORDER not in frame.attrs:
        return
    newest, latest, nulls = (
        frame.attrs[NEWEST_ORDER],
        frame.attrs.get(LATEST_ORDER),
        frame.attrs.get(NULL_CREATED, 0),
    )
    problem = ""
    if newest is None and latest is None and nulls:
        problem = (
            f"orders.created_at is NULL in all {nulls} orders: check the view (CONVERT_TZ returns NULL "
            "without the server's time-zone tables)"
        )
    elif (
        latest is not None and timedelta(0) <= until - now <= timedelta(days=2) and latest > now + FUTURE_SKEW
    ):
        hours = (latest - now).total_seconds() / 3600
        problem = (
            f"the newest order is {hours:.1f} h in the future (created_at {latest:%Y-%m-%d %H:%M} UTC): "
            "the view's times are not UTC (time-zone skew) or the database clock is wrong"
        )
    elif max_age_days and newest is not None and newest < min(until, now) - timedelta(days=max_age_days):
        days = (min(until, now) - newest).total_seconds() / 86400
        problem = (
            f"the newest order is {days:.0f} days old (created_at {newest:%Y-%m-%d %H:%M} UTC; limit "
            f"SHOPMAIL_MAX_ORDER_AGE_DAYS={max_age_days}): a stale replica or a view losing new orders?"
        )
    result = CheckResult(
        "orders", "orders_fresh", "created_at", "critical", not problem, int(bool(problem)), 1
    )
    result.message = problem
    report.results.append(result)
    if nulls and not problem:
        partial = CheckResult(
            "orders", "created_at_known", "created_at", "unknown", True, int(nulls), len(frame)
        )
        partial.message = f"orders.created_at: {nulls} orders have no time and are never read"
        report.results.append(partial)


def run_gate(
    frames: dict[str, pd.DataFrame],
    as_of: date | None = None,
    until: datetime | None = None,
    *,
    now: datetime | None = None,
    max_order_age_days: int | None = None,
    rules: ShopRules | None = None,
) -> GateReport:
    """Validate every extracted dataset; the caller stops the run if `report.success` is False.
    `as_of` (the run day) enables the age check; `until` (its end, naive UTC) the future check and, with
    `now` (naive UTC), the freshness check of the orders table (`max_order_age_days`: its limit).
    `rules`: the shop's links and currencies (default: https links to any host, any ISO currency)."""
    report = GateReport()
    rules = rules or ShopRules()
    for dataset, frame in frames.items():
        check_mapping(dataset, frame, report)
        check_required(dataset, frame, report, as_of)
        check_unparsable(dataset, frame, report)
        check_numbers(dataset, frame, report)
        check_later_rows(dataset, frame, report)
        check_text_lengths(dataset, frame, report)
        check_omitted_columns(dataset, frame, report)
        check_links(dataset, frame, report, rules)
        check_zero_dates(dataset, frame, report)
        check_times_present(dataset, frame, report)
        validate_dataset(dataset, frame, report)
        if until is not None:
            check_not_in_future(dataset, frame, report, until)
    if "customers" in frames:
        check_addresses(frames["customers"], report)
        check_languages(frames["customers"], report)
    if "orders" in frames:
        check_currencies(frames["orders"], report, rules.currencies)
    if "orders" in frames and until is not None and now is not None:
        check_freshness(frames["orders"], report, until, now, max_order_age_days)
    if "orders" in frames:
        check_status_history(frames["orders"], report)
    check_references(frames, report)
    if as_of is not None and "customers" in frames:
        check_birth_dates(frames["customers"], report, as_of)
    return report


def clean_frames(frames: dict[str, pd.DataFrame], report: GateReport) -> dict[str, pd.DataFrame]:
    """Frames without quarantined rows, nor the items of quarantined orders and carts, and with the
    values judged unknown blanked (customers are filtered later, so an affected recipient is reported as
    skipped with reason `quarantined`)."""
    cleaned = dict(frames)
    for name in ("orders", "order_items", "products", "carts", "cart_items", "coupons", "password_resets"):
        bad = report.quarantined_keys(name)
        if name in cleaned and bad:
            cleaned[name] = cleaned[name][~cleaned[name][KEYS[name]].isin(list(bad))]
    for parent, child, column in (("orders", "order_items", "order_id"), ("carts", "cart_items", "cart_id")):
        bad = report.quarantined_keys(parent)
        if child in cleaned and bad:
            cleaned[child] = cleaned[child][~cleaned[child][column].isin(list(bad))]
    for name, columns in report.unknown.items():
        if name not in cleaned:
            continue
        frame = cleaned[name].copy()
        for column, keys in columns.items():
            blank = pd.NaT if pd.api.types.is_datetime64_any_dtype(frame[column]) else None
            frame.loc[frame[KEYS[name]].isin(keys), column] = blank
        cleaned[name] = frame
    return cleaned


# --- links, addresses, numbers, currencies, text lengths, future rows, omitted columns -------------


@dataclass(frozen=True)
class ShopRules:
    """What shop data is judged against besides the contract: the shop's links and currencies."""

    allow_http: bool = False  # SHOPMAIL_ALLOW_HTTP_LINKS
    hosts: tuple[str, ...] = ()  # the shop's hosts, for links to its pages (empty: any host)
    currencies: tuple[str, ...] = ()  # the shop's currencies (empty: any ISO 4217 code)

    @classmethod
    def from_settings(cls, settings: Any) -> ShopRules:
        """The settings' rules; a currency setting that is not ISO 4217 is a configuration error naming
        it (checked here, not at every start: the ISO list costs Babel's data)."""
        unknown = [
            (field, code)
            for field, codes in (
                ("currency", [settings.currency]),
                ("order_currencies", settings.order_currencies),
            )
            for code in codes
            if code not in iso_currencies()
        ]
        if unknown:
            raise ValidationError.from_exception_data(
                "Settings",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "currency", "{text}", {"text": f"{code!r} is not an ISO 4217 currency"}
                        ),
                        loc=(field,),
                        input=code,
                    )
                    for field, code in unknown
                ],
            )
        return cls(settings.allow_http_links, settings.shop_hosts, settings.currencies)


# (dataset, column) -> (a page of the shop: must point at its hosts, severity of a bad link)
LINK_COLUMNS = {
    ("products", "url"): (True, "quarantine"),
    ("products", "image_url"): (False, "unknown"),  # no picture; the product stays
    ("password_resets", "reset_url"): (True, "quarantine"),
}


def _reasons(reasons: pd.Series) -> str:
    """The most frequent reasons, with counts: "no @ (3), nothing after the @ (1)"."""
    return ", ".join(
        f"{reason} ({count})" for reason, count in reasons.value_counts().head(TOP_VALUES).items()
    )


def _set_aside(
    dataset: str,
    column: str,
    check: str,
    severity: str,
    frame: pd.DataFrame,
    bad: pd.Series,
    reasons: pd.Series,
) -> tuple[CheckResult, list[Any], list[str]]:
    """The result of a row check whose every bad row has a reason in words (never its value)."""
    count = int(bad.sum())
    ok = severity != "quarantine" or _share_ok(count, len(frame))
    result = CheckResult(dataset, check, column, severity, ok, count, len(frame))
    what = SEVERITY_TEXT[severity]
    result.message = f"{dataset}.{column}: {count:,} of {len(frame):,} rows {what}: {_reasons(reasons)}"
    return result, _keys(frame, dataset, bad), reasons.tolist()


SEVERITY_TEXT = {
    "quarantine": "set aside, never mailed",
    "unknown": "treated as missing",
    "critical": "stop the run",
}


def check_links(dataset: str, frame: pd.DataFrame, report: GateReport, rules: ShopRules) -> None:
    """Links that may not go into a mail (config/urls.py: `javascript:`, `data:`, http where not
    allowed, credentials, control characters, another host than the shop's for its pages): the product
    or reset request is set aside with the reason; a bad picture link is treated as missing."""
    for (name, column), (shop_page, severity) in LINK_COLUMNS.items():
        if name != dataset or column not in frame.columns or frame.empty:
            continue
        hosts = rules.hosts if shop_page else ()
        values = frame[column]
        present = values.notna()
        problems = pd.Series(None, index=frame.index, dtype=object)
        problems[present] = [
            url_problem(v, allow_http=rules.allow_http, hosts=hosts) for v in values[present]
        ]
        bad = problems.notna()
        if not bad.any():
            continue
        result, keys, reasons = _set_aside(dataset, column, "valid_link", severity, frame, bad, problems[bad])
        report.add(result, keys, reasons)


def check_addresses(frame: pd.DataFrame, report: GateReport) -> None:
    """Addresses the sender would refuse (config/addresses.py, the rule every sender applies): the
    customer is set aside with the reason (the address itself is never shown)."""
    from segments.eligibility import mailable

    if frame.empty or "email" not in frame.columns:
        return
    email = frame["email"]
    bad = email.notna() & ~mailable(email)
    if not bad.any():
        return
    reasons = email[bad].map(lambda a: address_problem(a) or "cannot be mailed")
    result, keys, why = _set_aside("customers", "email", "valid_address", "quarantine", frame, bad, reasons)
    report.add(result, keys, why)


def _not_number_rows(frame: pd.DataFrame) -> set[Any]:
    return {label for labels in (frame.attrs.get(NOT_NUMBERS) or {}).values() for label in labels}


def check_numbers(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """Numbers that do not parse ('12,50 руб.' as a price; extract read them tolerantly): the row is
    set aside, the message names the table, the column and an example."""
    examples = frame.attrs.get(NUMBER_EXAMPLES) or {}
    for column, labels in (frame.attrs.get(NOT_NUMBERS) or {}).items():
        labels = [label for label in labels if label in frame.index]
        if not labels or dataset not in KEYS:
            continue
        result = CheckResult(
            dataset,
            "parsable_number",
            column,
            "quarantine",
            _share_ok(len(labels), len(frame)),
            len(labels),
            len(frame),
        )
        shown = ", ".join(repr(v) for v in examples.get(column, [])) or "?"
        result.message = (
            f"{dataset}.{column}: {len(labels):,} of {len(frame):,} rows are not a number, e.g. {shown} "
            "(set aside, never mailed; the contract wants a plain number such as 1290.50)"
        )
        report.add(result, frame.loc[labels, KEYS[dataset]].tolist())


def check_later_rows(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """Rows left out of the read because their time lies in the future even of now (customers registered
    in 2030): named first, before the references to them they break."""
    later = frame.attrs.get(LATER_ROWS) or {}
    count = int(later.get("count") or 0)
    if not count:
        return
    rows = len(frame) + count
    column = later["column"]
    result = CheckResult(dataset, "not_in_future", column, "quarantine", _share_ok(count, rows), count, rows)
    newest = later.get("newest")
    shown = f"newest {newest:%Y-%m-%d %H:%M} UTC" if newest is not None else "not a time"
    result.message = (
        f"{dataset}.{column}: {count:,} of {rows:,} rows lie in the future ({shown}; now is before "
        f"{later['after']:%Y-%m-%d %H:%M} UTC): left out, and rows referring to them set aside; the shop's "
        "clock or the view's time zone is wrong"
    )
    report.results.append(result)


def check_text_lengths(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """Texts longer than the contract allows (extract cut or blanked them): counted."""
    for column, (count, limit, action) in (frame.attrs.get(TEXT_LIMITED) or {}).items():
        result = CheckResult(dataset, "text_length", column, "unknown", True, int(count), len(frame))
        done = f"cut to {limit} characters" if action == "cut" else "treated as missing"
        result.message = (
            f"{dataset}.{column}: {count:,} values longer than the contract's {limit} characters, {done}"
        )
        report.results.append(result)


def check_omitted_columns(dataset: str, frame: pd.DataFrame, report: GateReport) -> None:
    """Optional columns the shop's view leaves out: noted (read as their default), never a failure."""
    for column in frame.attrs.get(DEFAULTED) or []:
        spec = DATASETS[dataset].column(column)
        default = "NULL" if spec.default is None else repr(spec.default)
        result = CheckResult(dataset, "column_in_view", column, "unknown", True, 0, len(frame))
        result.message = (
            f"{dataset}.{column} is not in the shop's table or view: every row reads as {default} "
            f"({spec.null}); add it to the view if the shop has it"
        )
        report.results.append(result)


def omitted_columns(report: GateReport) -> list[str]:
    """The notes of `check_omitted_columns`, for the run's log."""
    return [r.message for r in report.results if r.check == "column_in_view"]


@lru_cache(maxsize=1)
def iso_currencies() -> frozenset[str]:
    """ISO 4217 codes (CLDR via Babel, historic ones included)."""
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def check_currencies(frame: pd.DataFrame, report: GateReport, currencies: tuple[str, ...] = ()) -> None:
    """Orders in a currency that is not ISO 4217 ('ZZZ', 'руб') or not the shop's (`currencies`):
    set aside (an amount in an unknown currency cannot be written); NULL is the shop currency."""
    if frame.empty or "currency" not in frame.columns:
        return
    code = frame["currency"]
    present = code.notna()
    not_iso = present & ~code.isin(iso_currencies())
    foreign = (
        present & ~not_iso & ~code.isin(currencies) if currencies else pd.Series(False, index=frame.index)
    )
    bad = not_iso | foreign
    count = int(bad.sum())
    result = CheckResult(
        "orders", "currency_known", "currency", "quarantine", _share_ok(count, len(frame)), count, len(frame)
    )
    if count:
        allowed = ", ".join(currencies) if currencies else "ISO 4217 codes"
        result.message = (
            f"orders.currency: {count:,} of {len(frame):,} orders in a currency not the shop's or not "
            f"ISO 4217 (set aside, never mailed); found {_top_values(code[bad])}; allowed: {allowed} "
            "(SHOPMAIL_CURRENCY, SHOPMAIL_ORDER_CURRENCIES)"
        )
    reasons = [
        f"{c!r} is not one of the shop's currencies" if iso else f"{c!r} is not an ISO 4217 currency"
        for c, iso in zip(code[bad].tolist(), (~not_iso[bad]).tolist(), strict=True)
    ]
    report.add(result, _keys(frame, "orders", bad), reasons)
