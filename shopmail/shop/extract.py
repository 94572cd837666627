"""Read the shop data contract into pandas DataFrames (SQLAlchemy Core, any backend)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, Select, and_, case, func, select

from segments.local_time import local_to_utc
from shopmail.shop import schema as s

STATUS_COLUMNS = {status: f"{status}_at" for status in s.ORDER_STATUSES}


def day_end_utc(as_of: date, tz: ZoneInfo) -> datetime:
    """End of the local day `as_of` (exclusive) as naive UTC."""
    return local_to_utc(as_of + timedelta(days=1), tz)


def _orders_query(since: datetime, until: datetime) -> Select:
    history = s.order_status_history
    pivot = [
        func.max(case((history.c.status == status, history.c.changed_at))).label(column)
        for status, column in STATUS_COLUMNS.items()
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
            o.c.created_at,
            o.c.total,
            o.c.currency,
            o.c.tracking_number,
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


def dataset_query(name: str, since: datetime, until: datetime) -> Select:
    """The SELECT for one dataset; orders, their items and password resets are limited to [since, until)."""
    if name == "orders":
        return _orders_query(since, until)
    if name == "order_items":
        return _order_items_query(since, until)
    if name == "customers":
        return select(s.customers).where(s.customers.c.registered_at < until)
    if name == "products":
        return select(s.products).where(s.products.c.created_at < until)
    if name == "password_resets":
        resets = s.password_resets
        return select(resets).where(and_(resets.c.requested_at >= since, resets.c.requested_at < until))
    table = s.metadata.tables[name]
    return select(table)


FLOAT_COLUMNS = {"total", "price", "value"}


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Uniform dtypes across SQLite, PostgreSQL and MariaDB (Decimal -> float, datetimes)."""
    for column in frame.columns:
        if column in FLOAT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif column.endswith("_at") or column == "birth_date":
            frame[column] = pd.to_datetime(frame[column], errors="coerce")
    for column in ("marketing_consent", "in_stock", "overstock", "used", "percent"):
        if column in frame.columns:
            frame[column] = frame[column].fillna(False).astype(bool)
    return frame


def extract(
    engine: Engine, datasets: Iterable[str], as_of: date, tz: ZoneInfo, history_days: int
) -> dict[str, pd.DataFrame]:
    """Read each dataset as it stood at the end of `as_of` (shop-local day)."""
    until = day_end_utc(as_of, tz)
    since = until - timedelta(days=history_days + 1)
    frames: dict[str, pd.DataFrame] = {}
    with engine.connect() as conn:
        for name in datasets:
            frame = pd.read_sql_query(dataset_query(name, since, until), conn)
            frames[name] = _normalise(frame)
    return frames
