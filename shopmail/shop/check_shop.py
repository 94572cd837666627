"""`shopmail check-shop`: the shop database against the data contract, table by table and column by
column, the values the mapping could not map, and which enabled campaigns can run with it (plain
functions; the CLI prints the result).

Exact counts come from SQL aggregates (rows, NULLs, zero dates, values outside the allowed sets, rows
of the last 30 days); types are judged on a sample of `SAMPLE_ROWS` rows. Nothing is written: the
coupon-write probe inserts one row into the coupon target inside a transaction and rolls it back (and
deletes it, for tables that ignore rollbacks such as MyISAM). Whether a campaign can run is decided by
its dry run (shopmail/run/campaign_check.py, `ShopCheck.apply_dry_runs`): the table-by-table findings
here explain it.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Column, Engine, MetaData, String, Table, cast, delete, func, insert, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from shopmail.campaigns import Campaign
from shopmail.shop.contract import DATASETS, LANGUAGES, tables_needed
from shopmail.shop.coupon_outbox import CONTRACT_TABLE, outbox_table
from shopmail.shop.extract import (
    ZERO_DATE,
    failing_columns,
    normalise_language,
    parse_times,
    require_shop_db,
    shop_columns,
)
from shopmail.shop.schema import ORDER_STATUSES

SAMPLE_ROWS = 1000
RECENT_DAYS = 30
FUTURE_SKEW = timedelta(hours=1)
TIME_COLUMN = {  # the column that dates a dataset's rows (rows of the last 30 days)
    "customers": "registered_at",
    "products": "created_at",
    "orders": "created_at",
    "order_status_history": "changed_at",
    "carts": "updated_at",
    "password_resets": "requested_at",
}
TOP = 5  # values shown per column


@dataclass
class Finding:
    """One problem: `error` stops campaigns, `warning` is reported (rows set aside or defaulted)."""

    level: str
    dataset: str
    column: str
    message: str


@dataclass
class ColumnReport:
    name: str
    required: bool
    present: bool
    type: str
    null_rate: float | None = None
    zero_dates: int = 0
    allowed: list[str] = field(default_factory=list)
    outside: dict[str, int] = field(default_factory=dict)  # values outside `allowed`, top few with counts
    bad_type: int = 0  # sampled values that are not of the contract type
    bad_examples: list[str] = field(default_factory=list)


@dataclass
class DatasetReport:
    name: str
    optional: bool
    exists: bool
    rows: int | None = None
    rows_last_30_days: int | None = None
    columns: list[ColumnReport] = field(default_factory=list)


@dataclass
class CampaignVerdict:
    name: str
    enabled: bool
    can_run: bool
    reasons: list[str] = field(default_factory=list)
    dry_run: bool = False  # decided by a dry run (else by the table-by-table findings: disabled campaigns)
    stage: str = ""  # where the dry run stopped: datasets, extract, data checks, selection, render
    dataset: str = ""
    column: str = ""
    audience: int | None = None
    eligible: int | None = None
    seconds: float | None = None


@dataclass
class UnmappedValue:
    """A value the shop's data or mapping holds that Shopmail cannot use as it is: an order status
    outside the contract's (its orders are set aside), a language without templates (the default
    language instead), a currency that is not an ISO 4217 code."""

    what: str  # status, language, currency
    value: str
    rows: int
    label: str = ""  # the platform's name for it (a kit's status name)
    fix: str = ""  # what to do (a kit's config row to add)


@dataclass
class KitSetting:
    """A page of the platform whose kit is installed against Shopmail's setting for it."""

    setting: str
    kit_path: str
    current: str
    matches: bool


@dataclass
class ShopCheck:
    """What `check-shop` found."""

    shop: str
    checked_at: str
    datasets: list[DatasetReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    newest_order: str | None = None
    newest_order_age_hours: float | None = None
    coupon_table: str = "coupons"
    coupons_writable: bool | None = None
    coupon_problem: str = ""
    campaigns: list[CampaignVerdict] = field(default_factory=list)
    unmapped: list[UnmappedValue] = field(default_factory=list)
    currencies: dict[str, int] = field(default_factory=dict)  # orders per currency code
    kit: str = ""  # the platform kit installed in the shop DB (its shopmail_kit_config), if any
    kit_pages: list[KitSetting] = field(default_factory=list)
    profile: list[dict[str, Any]] = field(default_factory=list)  # the shop profile, setting by setting
    profile_missing: list[str] = field(default_factory=list)  # settings a real send would refuse
    real_send: str = ""  # why a send from here would be a real one (demo values refused), or ""
    as_of: str = ""  # the day the campaigns were dry-run for

    @property
    def blocked(self) -> list[CampaignVerdict]:
        """Enabled campaigns that cannot run."""
        return [c for c in self.campaigns if c.enabled and not c.can_run]

    @property
    def ok(self) -> bool:
        return not self.blocked

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def apply_dry_runs(self, outcomes: dict[str, Any]) -> None:
        """Decide each enabled campaign by its dry run (`shopmail.run.campaign_check.DryRunOutcome`):
        it can run when the dry run completed (and, with a coupon policy, coupons can be written)."""
        for verdict in self.campaigns:
            outcome = outcomes.get(verdict.name)
            if outcome is None:
                continue
            coupon = [r for r in verdict.reasons if r.startswith("coupons cannot be written")]
            verdict.dry_run, verdict.stage = True, "" if outcome.completed else outcome.stage
            verdict.reasons = ([] if outcome.completed else [outcome.reason]) + coupon
            verdict.can_run = outcome.completed and not coupon
            verdict.dataset, verdict.column = outcome.dataset, outcome.column
            verdict.audience, verdict.eligible = outcome.audience, outcome.eligible
            verdict.seconds = round(outcome.seconds, 2)


def _is_bad_value(value: Any, type_: str) -> bool:
    """A non-NULL sampled value that is not of the contract type (times are judged by `parse_times`)."""
    if type_ in {"integer", "decimal"}:
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        return pd.isna(number) or (type_ == "integer" and float(number) != int(float(number)))
    if type_ == "boolean":
        return str(value).strip().lower() not in {"0", "1", "true", "false", "t", "f"}
    return False


def _bad_types(sample: pd.Series, type_: str, column: str) -> tuple[int, list[str]]:
    values = sample.dropna()
    if values.empty or type_ == "text":
        return 0, []
    if type_ in {"timestamp", "date"}:
        _, bad = parse_times(values, "birth_date" if type_ == "date" else column)
        examples = values[bad.to_numpy()]
    else:
        examples = values[[_is_bad_value(v, type_) for v in values]]
    return len(examples), [str(v)[:40] for v in examples.head(3)]


def _table(name: str, columns: set[str]) -> Table:
    return Table(name, MetaData(), *[Column(c) for c in sorted(columns)])


def _value_counts(conn: Any, table: Table, column: str, limit: int = 50) -> dict[str, int]:
    col = table.c[column]
    rows = conn.execute(select(col, func.count()).group_by(col).order_by(func.count().desc()).limit(limit))
    return {str(value): int(count) for value, count in rows if value is not None}


def _outside(dataset: str, column: str, counts: dict[str, int]) -> dict[str, int]:
    """Values outside the allowed set (language tags after normalisation), most frequent first."""
    allowed = set(DATASETS[dataset].column(column).allowed)
    if column == "language":
        tags = normalise_language(pd.Series(list(counts), dtype=object))
        merged: dict[str, int] = {}
        for raw, tag in zip(counts, tags, strict=True):
            if tag is not None and tag not in allowed:
                merged[raw] = merged.get(raw, 0) + counts[raw]
        found = merged
    else:
        found = {v: n for v, n in counts.items() if v not in allowed}
    return dict(sorted(found.items(), key=lambda kv: -kv[1])[:TOP])


def check_column(
    conn: Any, dataset: str, table: Table, name: str, rows: int, sample: pd.DataFrame
) -> ColumnReport:
    """One contract column: presence, NULL rate, zero dates, allowed values, sampled types."""
    spec = DATASETS[dataset].column(name)
    report = ColumnReport(name, spec.required, name in table.c, spec.type, allowed=list(spec.allowed))
    if not report.present:
        return report
    col = table.c[name]
    nulls = conn.execute(select(func.count()).select_from(table).where(col.is_(None))).scalar() or 0
    if spec.type in {"timestamp", "date"}:
        zero = cast(col, String).like(f"{ZERO_DATE}%")
        report.zero_dates = int(
            conn.execute(select(func.count()).select_from(table).where(zero)).scalar() or 0
        )
        nulls = max(0, nulls - report.zero_dates)  # MariaDB/MySQL: a NOT NULL zero date `IS NULL` too
    report.null_rate = round(nulls / rows, 4) if rows else None
    if spec.allowed:
        report.outside = _outside(dataset, name, _value_counts(conn, table, name))
        # compared with the allowed values as the extraction compares them (a text parameter in the
        # connection's collation): a view the server will not compare fails here too
        conn.execute(select(func.count()).select_from(table).where(col.in_(list(spec.allowed)))).scalar()
    if name in sample.columns:
        report.bad_type, report.bad_examples = _bad_types(sample[name], spec.type, name)
    return report


def column_findings(dataset: str, rows: int, column: ColumnReport) -> list[Finding]:
    """The problems one column report shows."""
    found: list[Finding] = []
    d = DATASETS[dataset]
    if not column.present:
        if column.required:
            found.append(Finding("error", dataset, column.name, "required column missing"))
        else:
            default = d.column(column.name).default
            found.append(
                Finding("info", dataset, column.name, f"optional column missing: read as {default!r}")
            )
        return found
    spec = d.column(column.name)
    if column.bad_type:
        found.append(
            Finding(
                "error" if spec.required else "warning",
                dataset,
                column.name,
                f"{column.bad_type} of {min(rows, SAMPLE_ROWS)} sampled values are not {spec.type} "
                f"(e.g. {', '.join(column.bad_examples)})",
            )
        )
    if column.zero_dates:
        found.append(
            Finding("warning", dataset, column.name, f"{column.zero_dates} zero dates (read as NULL)")
        )
    if rows and column.null_rate == 1 and spec.type == "timestamp" and spec.required:
        found.append(
            Finding(
                "error",
                dataset,
                column.name,
                "every value is NULL (a time-zone conversion such as CONVERT_TZ without time-zone "
                "tables returns NULL): no row would ever be selected",
            )
        )
    elif column.null_rate and spec.required and spec.null == "not allowed":
        found.append(Finding("error", dataset, column.name, f"{column.null_rate:.1%} NULL (not allowed)"))
    if column.outside:
        shown = ", ".join(f"{v!r} ({n})" for v, n in column.outside.items())
        allowed = ", ".join(column.allowed)
        what = (
            "unknown languages fall back to the default language"
            if column.name == "language"
            else "those rows are set aside"
        )
        found.append(
            Finding("warning", dataset, column.name, f"values outside {{{allowed}}}: {shown}; {what}")
        )
    return found


def check_dataset(conn: Any, name: str, present: set[str] | None, now: datetime) -> DatasetReport:
    """Row counts and every contract column of one dataset."""
    d = DATASETS[name]
    report = DatasetReport(name, d.optional, present is not None)
    if present is None:
        return report
    table = _table(name, present)
    report.rows = int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
    time_column = TIME_COLUMN.get(name)
    if time_column and time_column in table.c:
        since = now - timedelta(days=RECENT_DAYS)
        recent = select(func.count()).select_from(table).where(table.c[time_column] >= since)
        report.rows_last_30_days = int(conn.execute(recent).scalar() or 0)
    wanted = [c.name for c in d.columns if c.name in present]
    sample = pd.read_sql_query(select(*[table.c[c] for c in wanted]).limit(SAMPLE_ROWS), conn)
    report.columns = [check_column(conn, name, table, c.name, report.rows, sample) for c in d.columns]
    return report


def order_freshness(conn: Any, now: datetime, max_age_days: int) -> tuple[datetime | None, list[Finding]]:
    """The newest order and whether it is plausible: not older than `max_age_days` (stale replica,
    broken view), not in the future (clock or time-zone skew)."""
    table = _table("orders", {"created_at"})
    created = cast(table.c.created_at, String)
    newest_text = conn.execute(select(func.max(created)).where(~created.like(f"{ZERO_DATE}%"))).scalar()
    newest = pd.to_datetime(newest_text, errors="coerce", format="ISO8601") if newest_text else None
    if newest is None or pd.isna(newest):
        return None, [
            Finding("error", "orders", "created_at", "no order has a time: nothing can be selected")
        ]
    if newest.tzinfo is not None:
        newest = newest.tz_convert("UTC").tz_localize(None)
    newest = newest.to_pydatetime()
    findings = []
    if newest > now + FUTURE_SKEW:
        hours = (newest - now).total_seconds() / 3600
        findings.append(
            Finding(
                "error",
                "orders",
                "created_at",
                f"the newest order is {hours:.1f} h in the future: the view's times are not UTC "
                "(time-zone skew) or the database clock is wrong",
            )
        )
    elif max_age_days and newest < now - timedelta(days=max_age_days):
        days = (now - newest).total_seconds() / 86400
        findings.append(
            Finding(
                "error",
                "orders",
                "created_at",
                f"the newest order is {days:.1f} days old (limit SHOPMAIL_MAX_ORDER_AGE_DAYS="
                f"{max_age_days}): a stale replica or a view that loses recent orders?",
            )
        )
    return newest, findings


def coupon_write_probe(
    engine: Engine, table_name: str, now: datetime, values: list[tuple[float, bool]] = ()
) -> tuple[bool, str]:
    """Insert one test coupon into the coupon target and roll it back; (writable, why not). For a kit's
    outbox, `values` (the enabled campaigns' coupon value and percent) are asked of the kit's bridge."""
    try:
        with engine.connect() as conn:
            present = shop_columns(conn, [table_name])[table_name]
    except SQLAlchemyError as exc:
        return False, str(getattr(exc, "orig", exc)).splitlines()[0]
    if present is None:
        return False, f"no table `{table_name}` to write coupons into (SHOPMAIL_COUPON_TABLE)"
    if table_name != CONTRACT_TABLE:
        return outbox_probe(engine, table_name, present, values)
    code = f"SHOPMAIL-CHECK-{secrets.token_hex(4).upper()}"
    values = {
        "code": code,
        "kind": "coupon",
        "value": 0,
        "percent": False,
        "expires_at": now,
        "used": False,
        "note": "shopmail check-shop probe (rolled back)",
    }
    values = {k: v for k, v in values.items() if k in present}
    if "code" not in values:
        return False, f"`{table_name}` has no `code` column"
    table = _table(table_name, set(values))
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            conn.execute(insert(table).values(**values))
            trans.rollback()
        with engine.begin() as conn:  # a table that ignores transactions (MyISAM) kept the row
            left = conn.execute(delete(table).where(table.c.code == code)).rowcount
    except SQLAlchemyError as exc:
        return False, str(getattr(exc, "orig", exc)).splitlines()[0][:300]
    if left:
        return True, f"`{table_name}` ignores rollbacks (not transactional): the probe row was deleted"
    return True, ""


def outbox_probe(
    engine: Engine, table_name: str, present: set[str], values: list[tuple[float, bool]] = ()
) -> tuple[bool, str]:
    """A coupon outbox is never probed with an insert: its bridge trigger would create a real platform
    coupon, which platform tables may keep after a rollback. Check its columns, that a trigger (the kit's
    bridge) is installed on it, and, where the kit has `shopmail_coupon_problem` (a platform whose coupons
    need a configured rule: Bitrix), that it can bridge each coupon value instead."""
    missing = sorted({c.name for c in outbox_table(table_name).columns} - set(present))
    if missing:
        columns = ", ".join(missing)
        return False, f"`{table_name}` lacks the outbox columns {columns}: install the kit's bridge"
    if engine.dialect.name not in ("mysql", "mariadb", "postgresql"):
        return True, ""
    query = "SELECT COUNT(*) FROM information_schema.triggers WHERE event_object_table = :t" + (
        " AND trigger_schema = DATABASE()" if engine.dialect.name != "postgresql" else ""
    )
    try:
        with engine.connect() as conn:
            triggers = conn.execute(text(query), {"t": table_name}).scalar_one()
    except SQLAlchemyError as exc:
        return False, str(getattr(exc, "orig", exc)).splitlines()[0][:300]
    if not triggers:
        return False, f"no trigger on `{table_name}`: install the kit's coupon_bridge.sql"
    if engine.dialect.name == "postgresql" or not values:
        return True, ""
    return bridge_problems(engine, values)


def bridge_problems(engine: Engine, values: list[tuple[float, bool]]) -> tuple[bool, str]:
    """Ask the kit's `shopmail_coupon_problem(value, percent)` (if it has one) about each coupon value."""
    exists = (
        "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = DATABASE() "
        "AND routine_name = 'shopmail_coupon_problem'"
    )
    try:
        with engine.connect() as conn:
            if not conn.execute(text(exists)).scalar_one():
                return True, ""
            problems = [
                conn.execute(text("SELECT shopmail_coupon_problem(:v, :p)"), {"v": v, "p": int(p)}).scalar()
                for v, p in sorted(set(values))
            ]
    except SQLAlchemyError as exc:
        return False, str(getattr(exc, "orig", exc)).splitlines()[0][:300]
    found = [str(p) for p in problems if p]
    return (False, "; ".join(found)) if found else (True, "")


def campaign_verdict(
    spec: Campaign,
    enabled: bool,
    datasets: dict[str, DatasetReport],
    findings: list[Finding],
    coupons_writable: bool | None,
) -> CampaignVerdict:
    """Whether `spec` can run with this data, and why not."""
    reasons = []
    for name in tables_needed(spec.datasets):
        report = datasets.get(name)
        if report is None or not report.exists:
            reasons.append(f"no `{name}` table or view")
    needed = set(tables_needed(spec.datasets))
    reasons += [
        f"{f.dataset}.{f.column}: {f.message}" for f in findings if f.level == "error" and f.dataset in needed
    ]
    if spec.coupon is not None and coupons_writable is False:
        reasons.append("coupons cannot be written into the coupon table")
    return CampaignVerdict(spec.name, enabled, not reasons, reasons)


def check_shop(
    engine: Engine,
    campaigns: dict[str, Campaign],
    enabled: dict[str, bool],
    now: datetime,
    *,
    shop: str = "",
    coupon_table: str = "coupons",
    max_order_age_days: int = 14,
    pages: dict[str, str] | None = None,
) -> ShopCheck:
    """Check the shop database against the contract and tell which campaigns can run by the findings
    (naive UTC `now`); `pages`: Shopmail's page settings (SHOPMAIL_CART_PATH -> value) to compare with
    an installed kit's. A dataset whose view fails when read is an error naming its failing columns."""
    require_shop_db(engine)
    result = ShopCheck(shop=shop, checked_at=now.isoformat(timespec="seconds"), coupon_table=coupon_table)
    with engine.connect() as conn:
        present = shop_columns(conn, list(dict.fromkeys([*DATASETS, KIT_CONFIG, KIT_UNMAPPED, coupon_table])))
    for name in DATASETS:
        try:
            with engine.connect() as conn:
                report = check_dataset(conn, name, present[name], now)
        except (DBAPIError, pd.errors.DatabaseError) as exc:
            report = DatasetReport(name, DATASETS[name].optional, True)
            columns = failing_columns(engine, name, present[name] or set())
            where = ", ".join(columns) or ""
            message = "; ".join(f"{c}: {m}" for c, m in columns.items()) or _db_message(exc)
            result.findings.append(Finding("error", name, where, f"the view cannot be read: {message}"))
            result.datasets.append(report)
            continue
        result.datasets.append(report)
        if not report.exists:
            level = "warning" if DATASETS[name].optional else "error"
            result.findings.append(Finding(level, name, "", "table or view missing"))
            continue
        for column in report.columns:
            result.findings += column_findings(name, report.rows or 0, column)
    readable = {d.name for d in result.datasets if d.columns or not d.exists}
    with engine.connect() as conn:
        if "orders" in readable and present["orders"] is not None and "created_at" in present["orders"]:
            newest, found = order_freshness(conn, now, max_order_age_days)
            result.findings += found
            if newest is not None:
                result.newest_order = newest.isoformat(timespec="seconds")
                result.newest_order_age_hours = round((now - newest).total_seconds() / 3600, 1)
        result.unmapped, result.currencies = unmapped_values(conn, present, readable)
        if present[KIT_CONFIG] is not None:
            result.kit, result.kit_pages, kit_findings = kit_settings(conn, pages or {})
            result.findings += kit_findings
        if present[KIT_UNMAPPED] is not None:
            result.unmapped = merge_kit_unmapped(result.unmapped, kit_unmapped(conn))
    with_coupons = [c for n, c in campaigns.items() if c.coupon is not None and enabled.get(n, True)]
    if with_coupons or present.get(coupon_table) is not None:
        values = [(c.coupon.value, c.coupon.percent) for c in with_coupons if c.coupon is not None]
        result.coupons_writable, result.coupon_problem = coupon_write_probe(engine, coupon_table, now, values)
        if not result.coupons_writable:
            result.findings.append(Finding("error", "coupon target", coupon_table, result.coupon_problem))
    by_name = {d.name: d for d in result.datasets}
    result.campaigns = [
        campaign_verdict(spec, enabled.get(name, True), by_name, result.findings, result.coupons_writable)
        for name, spec in campaigns.items()
    ]
    return result


KIT_CONFIG = "shopmail_kit_config"  # a platform kit's settings table (shopmail/shop/kits/*/views.sql)
KIT_UNMAPPED = "shopmail_kit_unmapped"  # a kit's view of the platform values it could not map
KIT_PAGES = {  # kit config row -> Shopmail setting
    "page_cart": "SHOPMAIL_CART_PATH",
    "page_account": "SHOPMAIL_ACCOUNT_PATH",
    "page_orders": "SHOPMAIL_ORDERS_PATH",
    "page_product": "SHOPMAIL_PRODUCT_PATH",
}
UNMAPPED_LIMIT = 50  # values listed per kind


def _db_message(exc: BaseException) -> str:
    cause = exc if isinstance(exc, DBAPIError) else exc.__cause__ or exc
    source = getattr(cause, "orig", None) or cause
    return str(source).splitlines()[0][:300]


def _iso_currencies() -> set[str]:
    from babel.numbers import list_currencies  # Babel's ISO 4217 list (current and historic codes)

    return set(list_currencies())


def unmapped_values(
    conn: Any, present: dict[str, set[str] | None], readable: set[str]
) -> tuple[list[UnmappedValue], dict[str, int]]:
    """Order statuses outside the contract's, languages without templates (after normalising the tags)
    and currencies that are not ISO 4217 codes, each with its count; and the orders per currency."""
    found: list[UnmappedValue] = []
    orders = present.get("orders") if "orders" in readable else None
    if orders and "status" in orders:
        counts = _value_counts(conn, _table("orders", {"status"}), "status", UNMAPPED_LIMIT)
        found += [UnmappedValue("status", v, n) for v, n in counts.items() if v not in ORDER_STATUSES]
    customers = present.get("customers") if "customers" in readable else None
    if customers and "language" in customers:
        counts = _value_counts(conn, _table("customers", {"language"}), "language", UNMAPPED_LIMIT)
        tags = normalise_language(pd.Series(list(counts), dtype=object))
        found += [
            UnmappedValue(
                "language", raw, n, fix="customers get the default language (SHOPMAIL_DEFAULT_LANGUAGE)"
            )
            for (raw, n), tag in zip(counts.items(), tags, strict=True)
            if tag is not None and tag not in LANGUAGES
        ]
    currencies: dict[str, int] = {}
    if orders and "currency" in orders:
        currencies = _value_counts(conn, _table("orders", {"currency"}), "currency", UNMAPPED_LIMIT)
        known = _iso_currencies()
        found += [
            UnmappedValue("currency", code, n, fix="not an ISO 4217 code: fix the view's currency column")
            for code, n in currencies.items()
            if code.strip().upper() not in known
        ]
    return found, currencies


def kit_unmapped(conn: Any) -> list[UnmappedValue]:
    """The installed kit's own list of platform values it could not map (what, value, label, rows, fix)."""
    rows = conn.execute(text(f"SELECT what, value, label, `rows`, fix FROM {KIT_UNMAPPED}")).all()
    return [
        UnmappedValue(str(w), str(v), int(n or 0), str(label or ""), str(fix or ""))
        for w, v, label, n, fix in rows
    ]


def merge_kit_unmapped(found: list[UnmappedValue], kit: list[UnmappedValue]) -> list[UnmappedValue]:
    """The contract-level list with the kit's labels and fixes (the kit's entry wins for a value)."""
    by_key = {(u.what, u.value): u for u in found}
    for entry in kit:
        by_key[(entry.what, entry.value)] = entry
    return sorted(by_key.values(), key=lambda u: (u.what, -u.rows, u.value))


def kit_settings(conn: Any, pages: dict[str, str]) -> tuple[str, list[KitSetting], list[Finding]]:
    """The installed kit's name, its platform's page paths against Shopmail's page settings, and
    warnings for pages that differ and a store URL still at the kit's example value."""
    rows = dict(conn.execute(text(f"SELECT name, value FROM {KIT_CONFIG}")).all())
    findings = []
    store = str(rows.get("store_url") or "")
    if "://shop.example" in store:
        findings.append(
            Finding(
                "warning",
                KIT_CONFIG,
                "store_url",
                f"still the kit's example {store!r}: every product link would point there "
                f"(UPDATE {KIT_CONFIG} SET value='https://<your shop>/' WHERE name='store_url')",
            )
        )
    kit_pages = []
    for row, setting in KIT_PAGES.items():
        if not rows.get(row):
            continue
        wanted, current = str(rows[row]), pages.get(setting, "")
        matches = current.strip().lstrip("/") == wanted.strip().lstrip("/") or (
            current.startswith(("http://", "https://")) and current.rstrip("/").endswith(wanted.strip("/"))
        )
        kit_pages.append(KitSetting(setting, wanted, current, matches))
        if not matches and current:
            findings.append(
                Finding(
                    "warning",
                    KIT_CONFIG,
                    row,
                    f"{setting} is {current!r}, the platform's page is {wanted!r}: mails would link to a "
                    f"page that does not exist (set {setting}=/{wanted.lstrip('/')})",
                )
            )
    return str(rows.get("kit") or ""), kit_pages, findings


def quick_text(result: ShopCheck) -> str:
    """A plain-text summary (logs, tests): one line per finding and per blocked campaign."""
    lines = [
        f"{f.level}: {f.dataset}{'.' + f.column if f.column else ''}: {f.message}" for f in result.findings
    ]
    lines += [f"cannot run {c.name}: {'; '.join(c.reasons)}" for c in result.blocked]
    return "\n".join(lines)
