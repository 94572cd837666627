"""Read the shop data contract into pandas DataFrames (SQLAlchemy Core, any backend)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    MetaData,
    Numeric,
    Select,
    String,
    Table,
    and_,
    case,
    func,
    inspect,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from config.settings import get_settings
from segments.local_time import local_to_utc
from shopmail.bulk import collector_paused
from shopmail.db import watch_database_file
from shopmail.shop import schema as s
from shopmail.shop.contract import (
    DATASETS,
    DatasetMissing,
    DatasetUnreadable,
    column_error,
    missing_required,
    tables_needed,
)
from shopmail.shop.lock_wait import lock_timeouts, wait_while_locked

logger = logging.getLogger(__name__)
STATUS_COLUMNS = {status: f"{status}_at" for status in s.ORDER_STATUSES}
UNPARSABLE = "unparsable"  # frame.attrs key: {column: [row labels whose non-NULL value is not a time]}
ZERO_DATES = "zero_dates"  # frame.attrs key: {column: count of MySQL zero dates read as NULL}
DEFAULTED = "defaulted"  # frame.attrs key: optional columns the shop's view omits (given their default)
LANGUAGE_TAGS = "language_tags"  # frame.attrs key: {raw tag: count} of tags normalised to another value
ZERO_DATE = "0000-00-00"  # MySQL/MariaDB "no date": NULL, not an error
NOT_NUMBERS = "not_numbers"  # frame.attrs key: {column: [row labels whose non-NULL value is not a number]}
NUMBER_EXAMPLES = "number_examples"  # frame.attrs key: {column: [a few of those values, as read]}
TEXT_LIMITED = "text_limited"  # frame.attrs key: {column: (rows, limit, "cut" | "blank")}
LATER_ROWS = "later_rows"  # frame.attrs key: rows left out because their time is in the future


class ShopDatabaseMissing(FileNotFoundError):
    """The shop DB is a SQLite file that does not exist (connecting would create an empty one)."""


def _as_text(column: ColumnElement, text_times: bool) -> ColumnElement:
    """A DATE/DATETIME column read as its raw text (SQLite stores text the driver layer would parse
    while fetching, raising on a value like 'yesterday'); a NUMERIC column, on every backend, as the
    driver gives it (SQLAlchemy's decimal processing raised "must be real number, not str" on a
    price of '12,50 руб.'; `parse_numbers` reads it); other columns as they are."""
    if text_times and isinstance(column.type, Date | DateTime) or isinstance(column.type, Numeric):
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
            _as_text(o.c.total, text_times),
            *[o.c[c] for c in ("currency", "tracking_number", "carrier") if present is None or c in present],
            *[status_times.c[c] for c in STATUS_COLUMNS.values()],
        )
        .select_from(o.outerjoin(status_times, status_times.c.order_id == o.c.id))
        .where(and_(o.c.created_at >= since, o.c.created_at < until))
    )


def _order_items_query(since: datetime, until: datetime) -> Select:
    o, i = s.orders, s.order_items
    return (
        select(i.c.order_id, i.c.product_id, i.c.qty, _as_text(i.c.price, False))
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
INTEGER_COLUMNS = {"qty"}  # numbers that must be whole (keys are judged by the checks on keys)
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


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DIGIT_GROUPS = re.compile(r"(?<=\d)[ \u00a0\u202f\u2009']+(?=\d{3}(?:\D|$))")  # '1 234 567,50'
_DECIMAL_COMMA = re.compile(r"([+-]?\d+),(\d{1,2})")  # '12,50'; '1,234' stays ambiguous


def _tolerant_number(value: object) -> float:
    """A number written as people write prices ('1 234,50', ' 12,5 '), else NaN ('12,50 руб.',
    '1,234', 'n/a')."""
    text = _DIGIT_GROUPS.sub("", str(value).strip())
    text = _DECIMAL_COMMA.sub(r"\1.\2", text) if _DECIMAL_COMMA.fullmatch(text) else text
    return float(text) if _NUMBER.fullmatch(text) else float("nan")


def parse_numbers(raw: pd.Series, column: str) -> tuple[pd.Series, pd.Series]:
    """(numbers as float64, int64 for a whole-number column without NULLs; mask of non-NULL values
    that are not a number). Numbers, decimals and numeric text pass as they are; text written as
    people write prices is read too ('1 234,50', '12,5'); anything else ('12,50 руб.', '1,234',
    'n/a', infinities, 2.5 items) becomes NULL and is flagged. Never raises."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        numbers = raw.astype("float64")
    else:
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
        todo = raw.notna().to_numpy() & numbers.isna().to_numpy()
        if todo.any():  # few: one by one
            numbers[todo] = [_tolerant_number(v) for v in raw[todo]]
    bad = raw.notna().to_numpy() & ~np.isfinite(numbers.to_numpy())
    if column in INTEGER_COLUMNS:
        bad |= np.isfinite(numbers.to_numpy()) & (numbers.to_numpy() % 1 != 0)
    numbers = numbers.where(~bad)
    if column in INTEGER_COLUMNS and len(numbers) and numbers.notna().all():
        numbers = numbers.astype("int64")
    return numbers, pd.Series(bad, index=raw.index)


def normalise_currency(raw: pd.Series) -> pd.Series:
    """Currency codes trimmed and upper-cased (' rub' -> 'RUB'); blank -> NULL (the shop currency).
    Whether a code is ISO 4217 and one of the shop's is the gate's question."""
    text = raw.astype("string").str.strip().str.upper()
    text = text.where(text.notna() & (text != ""), None)
    return text.astype(object).where(text.notna(), None)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Uniform dtypes across SQLite, PostgreSQL and MariaDB (Decimal -> float, datetimes). Rows whose
    time values do not parse are listed in `frame.attrs[UNPARSABLE]` ({column: [row labels]})."""
    unparsable: dict[str, list] = {}
    zeros: dict[str, int] = {}
    not_numbers: dict[str, list] = {}
    examples: dict[str, list[str]] = {}
    for column in frame.columns:
        if column in FLOAT_COLUMNS or column in INTEGER_COLUMNS:
            raw = frame[column]
            frame[column], bad = parse_numbers(raw, column)
            if bad.any():
                not_numbers[column] = frame.index[bad.to_numpy()].tolist()
                examples[column] = [str(v) for v in raw[bad.to_numpy()].drop_duplicates().head(3)]
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
    if "currency" in frame.columns:
        frame["currency"] = normalise_currency(frame["currency"])
    if "email" in frame.columns:  # ' Anna@Mail.ru ' is an address with stray spaces, not a broken one
        frame["email"] = frame["email"].where(frame["email"].isna(), frame["email"].astype(str).str.strip())
    for column in ("marketing_consent", "in_stock", "overstock", "used", "percent"):
        if column in frame.columns:
            frame[column] = frame[column].fillna(False).astype(bool)
    frame.attrs[UNPARSABLE] = unparsable
    frame.attrs[ZERO_DATES] = zeros
    frame.attrs[NOT_NUMBERS] = not_numbers
    frame.attrs[NUMBER_EXAMPLES] = examples
    return frame


# Texts longer than the contract allows (shopmail/shop/schema.py): names of people and other optional
# values are treated as unknown (a 5,000-character "first name" is not a name), product texts are cut.
TEXT_LIMITS = {
    "customers": {"first_name": "blank", "last_name": "blank", "city": "blank", "discount_card": "blank"},
    "products": {"name": "cut", "brand": "cut", "category": "cut"},
    "orders": {"tracking_number": "blank", "carrier": "blank"},
}
ELLIPSIS = "\u2026"


def limit_texts(dataset: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Apply the contract's text lengths (`TEXT_LIMITS`): an over-long value is NULL ("blank") or cut
    to the limit with an ellipsis ("cut"); counted in `frame.attrs[TEXT_LIMITED]`."""
    found: dict[str, tuple[int, int, str]] = {}
    for column, action in TEXT_LIMITS.get(dataset, {}).items():
        values = frame[column] if column in frame.columns else None
        if values is None or not (
            pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)
        ):
            continue
        limit = s.metadata.tables[dataset].c[column].type.length
        too_long = (values.str.len() > limit).fillna(False).to_numpy(dtype=bool)
        if not too_long.any():
            continue
        if action == "cut":
            frame.loc[too_long, column] = frame.loc[too_long, column].str[: limit - 1] + ELLIPSIS
        else:
            frame.loc[too_long, column] = None
        found[column] = (int(too_long.sum()), int(limit), action)
    frame.attrs[TEXT_LIMITED] = found
    return frame


FUTURE_TIMES = {"customers": "registered_at", "products": "created_at"}  # read up to the run day only
FUTURE_MARGIN = timedelta(hours=1)


def future_rows(conn: Connection, dataset: str, until: datetime, text_times: bool = False) -> dict:
    """Rows of `dataset` left out of a read up to `until` because their time is in the future even of
    now (registered in 2030: the clock or the view is wrong): {"column", "count", "newest"}."""
    column = s.metadata.tables[dataset].c[FUTURE_TIMES[dataset]]
    after = max(until, datetime.now(UTC).replace(tzinfo=None)) + FUTURE_MARGIN
    stamp = type_coerce(column, String) if text_times else column
    count, newest = conn.execute(select(func.count(), func.max(stamp)).where(column > after)).one()
    return {"column": column.name, "count": int(count or 0), "newest": _time(newest), "after": after}


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


def missing_datasets(
    engine: Engine, datasets: list[str] | tuple[str, ...], lock_wait_s: float | None = None
) -> list[str]:
    """The contract tables behind `datasets` the shop database does not have. A shop another program
    holds locked is waited for (warnings), at most `lock_wait_s` (default SHOPMAIL_SHOP_LOCK_WAIT_S)."""
    require_shop_db(engine)

    def look() -> list[str]:
        with engine.connect() as conn, lock_timeouts(conn):
            columns = shop_columns(conn, tables_needed(datasets))
        return [name for name, present in columns.items() if present is None]

    limit = get_settings().shop_lock_wait_s if lock_wait_s is None else lock_wait_s
    return wait_while_locked(look, limit_s=limit, warn=logger.warning, what=f"The shop database {engine.url}")


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
    watch_database_file(engine)  # deleted or replaced during the run: the run stops (shopmail/db.py)


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
    with engine.connect() as conn, lock_timeouts(conn):
        columns = shop_columns(conn, tables_needed(datasets))
        check_contract(columns, datasets)
        for name in datasets:
            present = columns[name] or set()
            try:
                frame = read_frame(dataset_query(name, since, until, text_times, present), conn)
            except (DBAPIError, pd.errors.DatabaseError) as exc:
                problem = unreadable_dataset(engine, name, columns, exc)
                if problem is exc:
                    raise
                raise problem from exc
            if frame.empty:  # a view whose times are text the SQL filter cannot compare: say so
                frame.attrs[UNREADABLE_TIMES] = unreadable_times(conn, name, present)
            frame = add_defaults(name, limit_texts(name, _normalise(frame)), present)
            if name in FUTURE_TIMES:
                frame.attrs[LATER_ROWS] = future_rows(conn, name, until, text_times)
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


UNREADABLE_TIMES = "unreadable_times"  # frame attrs: {column: examples} of a dataset read empty because
# its rows' times are not times (text such as '13/11/2026 04:07': the SQL filter compares them as text)
TIME_FILTERED = {  # the time column of each dataset `dataset_query` filters on (order_items: its orders')
    "customers": "registered_at",
    "products": "created_at",
    "orders": "created_at",
    "password_resets": "requested_at",
}
PROBE_ROWS = 20


def _probe_table(name: str, columns: set[str]) -> Table:
    return Table(name, MetaData(), *[Column(c) for c in sorted(columns)])


def unreadable_times(conn: Connection, dataset: str, present: set[str]) -> dict[str, list[str]]:
    """For a dataset read empty: {time column: up to 3 examples} when its table has rows whose time
    (up to `PROBE_ROWS` sampled) none reads as a time; {} when the table is simply empty or its times
    are fine (nothing in the run's window)."""
    column = TIME_FILTERED.get(dataset)
    if column is None or column not in present:  # order_items: its orders' times (orders reports them)
        return {}
    table = _probe_table(dataset, {column})
    raw = type_coerce(table.c[column], String)
    try:
        # a failure must not end the extraction's transaction (PostgreSQL aborts it; SQLite's driver
        # handles savepoints badly and MariaDB does not abort)
        guard = conn.begin_nested() if conn.dialect.name == "postgresql" else contextlib.nullcontext()
        with guard:
            query = select(raw).where(table.c[column].is_not(None)).limit(PROBE_ROWS)
            sample = pd.Series(list(conn.execute(query).scalars()), dtype=object)
    except DBAPIError:
        return {}
    if sample.empty:
        return {}
    parsed, bad = parse_times(sample, column)
    if parsed.notna().any() or not bad.any():
        return {}
    return {column: [str(v)[:40] for v in sample[bad.to_numpy()].head(3)]}


def _probe(engine: Engine, query: Select) -> str | None:
    """Run `query` on its own connection; the server's message if it fails, else None."""
    try:
        with engine.connect() as conn:
            conn.execute(query).all()
    except DBAPIError as exc:
        source = exc.orig if exc.orig is not None else exc
        return str(source).splitlines()[0][:300]
    return None


def failing_columns(engine: Engine, dataset: str, present: set[str]) -> dict[str, str]:
    """The contract columns of `dataset` whose reading fails on its own: each is compared the way the
    extraction compares it (text with a text parameter, times with a time parameter), which evaluates
    it for every row. {column: the server's message}."""
    table = _probe_table(dataset, present)
    found: dict[str, str] = {}
    for spec in DATASETS[dataset].columns:
        if spec.name not in present:
            continue
        column = table.c[spec.name]
        if spec.type == "text":
            condition = column == literal("shopmail-probe", String)
        elif spec.type in {"timestamp", "date"}:
            condition = column < literal(datetime(2000, 1, 1), DateTime)
        else:
            condition = column.is_not(None)
        message = _probe(engine, select(func.count()).select_from(table).where(condition))
        if message:
            found[spec.name] = message
    return found


def unreadable_dataset(
    engine: Engine, dataset: str, columns: dict[str, set[str] | None], exc: BaseException
) -> BaseException:
    """The error to raise for a dataset whose query failed: the original for a transient error (the
    extract task retries it), else `DatasetUnreadable` naming the table or view whose columns fail on
    their own (the dataset's, or one read with it: orders read `order_status_history`)."""
    from shopmail.db import is_transient_db_error

    if is_transient_db_error(exc):
        return exc
    cause = exc if isinstance(exc, DBAPIError) else exc.__cause__ or exc.__context__ or exc
    source = cause.orig if isinstance(cause, DBAPIError) and cause.orig is not None else cause
    message = str(source).splitlines()[0][:300] if str(source) else type(source).__name__
    for table in tables_needed([dataset]):
        failing = failing_columns(engine, table, columns.get(table) or set())
        if failing:
            return DatasetUnreadable(table, failing, message)
    return DatasetUnreadable(dataset, {}, message)
