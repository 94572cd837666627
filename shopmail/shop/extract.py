"""Read the shop data contract into pandas DataFrames (SQLAlchemy Core, any backend)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    Engine,
    Select,
    String,
    and_,
    case,
    func,
    inspect,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from segments.local_time import local_to_utc
from shopmail.bulk import collector_paused
from shopmail.shop import schema as s
from shopmail.shop.contract import (
    DATASETS,
    DatasetMissing,
    column_error,
    missing_required,
    tables_needed,
)

STATUS_COLUMNS = {status: f"{status}_at" for status in s.ORDER_STATUSES}
UNPARSABLE = "unparsable"  # frame.attrs key: {column: [row labels whose non-NULL value is not a time]}
ZERO_DATES = "zero_dates"  # frame.attrs key: {column: count of MySQL zero dates read as NULL}
DEFAULTED = "defaulted"  # frame.attrs key: optional columns the shop's view omits (given their default)
LANGUAGE_TAGS = "language_tags"  # frame.attrs key: {raw tag: count} of tags normalised to another value
ZERO_DATE = "0000-00-00"  # MySQL/MariaDB "no date": NULL, not an error


class ShopDatabaseMissing(FileNotFoundError):
    """The shop DB is a SQLite file that does not exist (connecting would create an empty one)."""


def _as_text(column: ColumnElement, text_times: bool) -> ColumnElement:
    """A DATE/DATETIME column read as its raw text (SQLite stores text the driver layer would parse
    while fetching, raising on a value like 'yesterday'); other columns as they are."""
    if text_times and isinstance(column.type, Date | DateTime):
        return type_coerce(column, String).label(column.name)
    return column


def day_end_utc(as_of: date, tz: ZoneInfo) -> datetime:
    """End of the local day `as_of` (exclusive) as naive UTC."""
    return local_to_utc(as_of + timedelta(days=1), tz)


def _orders_query(
    since: datetime, until: datetime, text_times: bool = False, present: set[str] | None = None
) -> Select:
    history = s.order_status_history
    pivot = [
        (type_coerce(stamp, String) if text_times else stamp).label(column)
        for column, stamp in (
            (column, func.max(case((history.c.status == status, history.c.changed_at))))
            for status, column in STATUS_COLUMNS.items()
        )
    ]
    status_times = (
        select(history.c.order_id, *pivot)
        .where(history.c.changed_at < until)
        .group_by(history.c.order_id)
        .subquery("status_times")
    )
    o = s.orders
    return (
        select(
            o.c.id,
            o.c.customer_id,
            o.c.status,
            _as_text(o.c.created_at, text_times),
            o.c.total,
            *[o.c[c] for c in ("currency", "tracking_number", "carrier") if present is None or c in present],
            *[status_times.c[c] for c in STATUS_COLUMNS.values()],
        )
        .select_from(o.outerjoin(status_times, status_times.c.order_id == o.c.id))
        .where(and_(o.c.created_at >= since, o.c.created_at < until))
    )


def _order_items_query(since: datetime, until: datetime) -> Select:
    o, i = s.orders, s.order_items
    return (
        select(i.c.order_id, i.c.product_id, i.c.qty, i.c.price)
        .select_from(i.join(o, o.c.id == i.c.order_id))
        .where(and_(o.c.created_at >= since, o.c.created_at < until))
    )


def dataset_query(
    name: str, since: datetime, until: datetime, text_times: bool = False, present: set[str] | None = None
) -> Select:
    """The SELECT for one dataset; orders, their items and password resets are limited to [since, until).
    `text_times`: DATE/DATETIME columns come back as raw text (parsed by `parse_times`). `present`: the
    columns the shop's table or view has (None: all); absent optional columns are not selected."""
    if name == "orders":
        return _orders_query(since, until, text_times, present)
    if name == "order_items":
        return _order_items_query(since, until)
    table = s.metadata.tables[name]
    columns = [c for c in table.c if present is None or c.name in present]
    query = select(*[_as_text(column, text_times) for column in columns])
    if name == "customers":
        return query.where(s.customers.c.registered_at < until)
    if name == "products":
        return query.where(s.products.c.created_at < until)
    if name == "password_resets":
        resets = s.password_resets
        return query.where(and_(resets.c.requested_at >= since, resets.c.requested_at < until))
    return query


FLOAT_COLUMNS = {"total", "price", "value"}
DATE_COLUMNS = {"birth_date"}  # calendar days (seconds resolution); other `*_at` columns are timestamps


def _is_time_column(column: str) -> bool:
    return column.endswith("_at") or column in DATE_COLUMNS


def zero_dates(raw: pd.Series) -> int:
    """How many values are MySQL zero dates ('0000-00-00 ...'): read as NULL, reported."""
    if pd.api.types.is_datetime64_any_dtype(raw) or raw.isna().all():
        return 0
    return int(raw.astype("string").str.startswith(ZERO_DATE, na=False).sum())


def normalise_language(raw: pd.Series) -> pd.Series:
    """Language tags to their lower-case primary subtag: 'ru-RU', 'ru_ru', ' RU ' -> 'ru'; 'en-GB' ->
    'en'; blank -> NULL. Whether the language is one the templates have is the gate's question."""
    text = raw.astype("string").str.strip().str.lower().str.split(r"[-_]", n=1, regex=True).str[0]
    text = text.where(text.notna() & (text != ""), None)
    return text.astype(object).where(text.notna(), None)


def parse_times(raw: pd.Series, column: str) -> tuple[pd.Series, pd.Series]:
    """(parsed times, mask of non-NULL values that are not a time). Text is read as ISO 8601
    ('2026-11-23 10:00:00', '2026-11-23'); anything else ('yesterday', '2026-13-45') becomes NaT and is
    flagged. MySQL zero dates ('0000-00-00 ...') are NULL, not flagged. Never raises."""
    unit = "datetime64[s]" if column in DATE_COLUMNS else "datetime64[us]"
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw.astype(unit), pd.Series(False, index=raw.index)
    text = raw.astype("string")  # str(datetime) / str(date) are ISO 8601 too
    try:
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    except (ValueError, TypeError, OverflowError):  # e.g. mixed time zones: one by one
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:  # the contract is naive UTC
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype(unit)
    bad = raw.notna().to_numpy() & parsed.isna().to_numpy()
    if bad.any():  # few: look at each
        bad[bad] = [not str(v).startswith(ZERO_DATE) for v in raw[bad]]
    return parsed, pd.Series(bad, index=raw.index)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Uniform dtypes across SQLite, PostgreSQL and MariaDB (Decimal -> float, datetimes). Rows whose
    time values do not parse are listed in `frame.attrs[UNPARSABLE]` ({column: [row labels]})."""
    unparsable: dict[str, list] = {}
    zeros: dict[str, int] = {}
    for column in frame.columns:
        if column in FLOAT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif _is_time_column(column):
            if count := zero_dates(frame[column]):
                zeros[column] = count
            frame[column], bad = parse_times(frame[column], column)
            if bad.any():
                unparsable[column] = frame.index[bad.to_numpy()].tolist()
    if "language" in frame.columns:
        raw = frame["language"]
        frame["language"] = normalise_language(raw)
        changed = raw.notna() & (raw.astype("string") != frame["language"].astype("string")).fillna(True)
        frame.attrs[LANGUAGE_TAGS] = {str(k): int(v) for k, v in raw[changed].value_counts().head(10).items()}
    if "email" in frame.columns:  # ' Anna@Mail.ru ' is an address with stray spaces, not a broken one
        frame["email"] = frame["email"].where(frame["email"].isna(), frame["email"].astype(str).str.strip())
    for column in ("marketing_consent", "in_stock", "overstock", "used", "percent"):
        if column in frame.columns:
            frame[column] = frame[column].fillna(False).astype(bool)
    frame.attrs[UNPARSABLE] = unparsable
    frame.attrs[ZERO_DATES] = zeros
    return frame


def shop_columns(conn: Connection | Engine, tables: list[str]) -> dict[str, set[str] | None]:
    """The columns (lower-cased) of each table or view in the shop database; None: it does not exist."""
    inspector = inspect(conn)
    existing = {n.lower() for n in (*inspector.get_table_names(), *inspector.get_view_names())}
    found: dict[str, set[str] | None] = {}
    for table in tables:
        if table.lower() not in existing:
            found[table] = None
        else:
            found[table] = {c["name"].lower() for c in inspector.get_columns(table)}
    return found


def missing_datasets(engine: Engine, datasets: list[str] | tuple[str, ...]) -> list[str]:
    """The contract tables behind `datasets` the shop database does not have."""
    require_shop_db(engine)
    with engine.connect() as conn:
        columns = shop_columns(conn, tables_needed(datasets))
    return [name for name, present in columns.items() if present is None]


def add_defaults(name: str, frame: pd.DataFrame, present: set[str]) -> pd.DataFrame:
    """Optional columns the shop's view omits, with their contract default (listed in attrs)."""
    omitted = [c for c in DATASETS[name].optional_columns if c not in present]
    for column in omitted:
        default = DATASETS[name].column(column).default
        frame[column] = pd.Series([default] * len(frame), index=frame.index, dtype=object)
    frame.attrs[DEFAULTED] = omitted
    return frame


def fill_product_urls(frame: pd.DataFrame, template: str | None) -> pd.DataFrame:
    """Products without a URL get `template` with `{id}` filled in (e.g. 'https://shop/product/{id}')."""
    if template and "url" in frame.columns and frame["url"].isna().any():
        blank = frame["url"].isna()
        frame.loc[blank, "url"] = [template.format(id=int(i)) for i in frame.loc[blank, "id"]]
    return frame


def check_contract(columns: dict[str, set[str] | None], datasets: Iterable[str]) -> None:
    """Raise `DatasetMissing` for absent tables, `ContractError` for an absent required column."""
    for table, present in columns.items():
        missing = missing_required(table, present) if present is not None else []
        if missing:
            raise column_error(table, missing)
    absent = [t for t in tables_needed(list(datasets)) if columns.get(t) is None]
    if absent:
        raise DatasetMissing(absent)


def require_shop_db(engine: Engine) -> None:
    """Raise `ShopDatabaseMissing` for a SQLite shop file that does not exist or is empty (SQLite, and
    `get_engine`, quietly create an empty file, which would fail later with 'no such table')."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.database.startswith("file:") or url.query.get("mode") == "memory":
        return
    path = Path(url.database)
    if not path.exists() or path.stat().st_size == 0:
        raise ShopDatabaseMissing(f"the shop database file {path} does not exist (or is empty)")


READ_CHUNK_ROWS = 100_000


def read_frame(query: Select, conn: Connection, chunk_rows: int = READ_CHUNK_ROWS) -> pd.DataFrame:
    """`pd.read_sql_query` in chunks of `chunk_rows`: the driver's row tuples of one chunk at a time
    instead of the whole table's (1M customers: about 235 MB less at the peak). A column whose type
    differs between chunks (all NULL in one) is inferred again over the whole column, as one read
    would have done."""
    with collector_paused():  # millions of row tuples, no cycles
        parts = list(pd.read_sql_query(query, conn, chunksize=chunk_rows))
    if not parts:
        return pd.read_sql_query(query, conn)
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat(parts, ignore_index=True)
    for column in frame.columns:
        if len({str(part[column].dtype) for part in parts}) > 1:
            frame[column] = frame[column].infer_objects()
    return frame


def extract(
    engine: Engine,
    datasets: Iterable[str],
    as_of: date,
    tz: ZoneInfo,
    history_days: int,
    product_url: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Read each dataset as it stood at the end of `as_of` (shop-local day). A dataset or required column
    the shop lacks raises `DatasetMissing` / `ContractError` naming it; omitted optional columns get their
    contract default. `product_url`: template for products without a URL ('{id}' filled in)."""
    datasets = list(datasets)
    until = day_end_utc(as_of, tz)
    since = until - timedelta(days=history_days + 1)
    require_shop_db(engine)
    text_times = engine.dialect.name == "sqlite"  # the only backend that stores any text as a time
    frames: dict[str, pd.DataFrame] = {}
    with engine.connect() as conn:
        columns = shop_columns(conn, tables_needed(datasets))
        check_contract(columns, datasets)
        for name in datasets:
            present = columns[name] or set()
            frame = read_frame(dataset_query(name, since, until, text_times, present), conn)
            frame = add_defaults(name, _normalise(frame), present)
            if name == "products":
                frame = fill_product_urls(frame, product_url)
            if name == "orders":
                frame.attrs.update(order_times(conn, until, text_times))
            frames[name] = frame
    return frames


NEWEST_ORDER = "newest_order"  # orders frame attrs: newest created_at before the run day's end
LATEST_ORDER = "latest_order"  # orders frame attrs: newest created_at of all (later: in the future)
NULL_CREATED = "null_created_at"  # orders frame attrs: orders whose created_at is NULL (not read)


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    parsed = pd.to_datetime(str(value), errors="coerce", format="ISO8601")
    if pd.isna(parsed):
        return None
    return (parsed.tz_convert("UTC").tz_localize(None) if parsed.tzinfo else parsed).to_pydatetime()


def order_times(conn: Connection, until: datetime, text_times: bool = False) -> dict[str, object]:
    """Freshness facts about the whole orders table (indexed: cheap): the newest order before `until`,
    the newest of all and how many orders have no time at all (a time-zone view returning NULL)."""
    o = s.orders
    created = type_coerce(o.c.created_at, String) if text_times else o.c.created_at
    newest = conn.execute(select(func.max(created)).where(o.c.created_at < until)).scalar()
    latest = conn.execute(select(func.max(created))).scalar()
    nulls = conn.execute(select(func.count()).select_from(o).where(o.c.created_at.is_(None))).scalar()
    return {NEWEST_ORDER: _time(newest), LATEST_ORDER: _time(latest), NULL_CREATED: int(nulls or 0)}
