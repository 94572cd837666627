"""The demo shop's service-mail events: registrations, password resets and status changes today."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, text

from segments.audiences.registry import build_audience
from shopmail.campaigns import get_campaign
from shopmail.devtools.demo_shop import generate_demo_shop, shop_now
from shopmail.shop.extract import extract

TODAY = dt.date(2026, 11, 23)
MSK = ZoneInfo("Europe/Moscow")
DAY_START = dt.datetime(2026, 11, 22, 21, 0)  # local midnight, naive UTC
NOW = shop_now(TODAY)  # 06:00 shop time
HAPPY = ("received", "paid", "accepted", "shipped", "delivered")
SERVICE = ["welcome", "password_reminder", "review_request", *(f"order_{s}" for s in HAPPY)]
SERVERS = {
    "postgresql": os.environ.get("SHOPMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mariadb": os.environ.get("SHOPMAIL_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/mysql"),
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('svc') / 'shop.db'}"
    generate_demo_shop(url, customers=2000, seed=3, today=TODAY)
    engine = create_engine(url)
    yield engine
    engine.dispose()


def _rows(db: Engine, sql: str) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(text(sql)).all())


def _stamp(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def test_password_resets_are_consistent_and_some_are_from_today(db: Engine) -> None:
    rows = _rows(
        db,
        "SELECT r.id, r.requested_at, r.expires_at, r.reset_url, c.registered_at FROM password_resets r "
        "LEFT JOIN customers c ON c.id = r.customer_id",
    )
    assert rows
    for _, requested, expires, url, registered in rows:
        assert registered is not None  # every request belongs to a customer
        assert _stamp(registered) < _stamp(requested) <= NOW < _stamp(requested) + dt.timedelta(days=31)
        assert _stamp(expires) > _stamp(requested)
        assert url.startswith("https://") and "?token=" in url  # the run report redacts token= values
    today = [(_stamp(r), _stamp(e)) for _, r, e, _, _ in rows if _stamp(r) >= DAY_START]
    assert len(today) >= 4
    day_end = DAY_START + dt.timedelta(days=1)
    assert any(e <= day_end for _, e in today), "some expire today: the daily run must skip them"
    assert any(e > day_end for _, e in today), "some outlive the day"


def test_some_customers_registered_today_without_orders_or_carts(db: Engine) -> None:
    fresh = _rows(
        db,
        f"SELECT c.id, c.registered_at, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id), "
        f"(SELECT count(*) FROM carts k WHERE k.customer_id = c.id) FROM customers c "
        f"WHERE c.registered_at >= '{DAY_START}'",
    )
    assert len(fresh) >= 2
    assert all(_stamp(at) <= NOW - dt.timedelta(hours=1) for _, at, _, _ in fresh)
    assert sum(1 for _, _, orders, carts in fresh if orders == 0 and carts == 0) >= 2


@pytest.mark.parametrize("status", HAPPY)
def test_orders_reach_each_status_today_with_no_later_status(db: Engine, status: str) -> None:
    later = HAPPY[HAPPY.index(status) + 1 :] + ("cancelled",)
    marks = ", ".join(f"'{s}'" for s in later)
    hits = _rows(
        db,
        f"SELECT h.order_id FROM order_status_history h WHERE h.status = '{status}' "
        f"AND h.changed_at >= '{DAY_START}' AND NOT EXISTS (SELECT 1 FROM order_status_history l "
        f"WHERE l.order_id = h.order_id AND l.status IN ({marks}))",
    )
    assert len(hits) >= 2


@pytest.mark.parametrize(
    "name",
    ["welcome", "password_reminder", "order_received", "order_paid", "order_accepted", "order_shipped",
     "order_delivered"],
)  # fmt: skip
def test_a_poll_over_the_night_finds_every_polled_service_mail(db: Engine, name: str) -> None:
    campaign = get_campaign(name)
    assert campaign.polled
    frames = extract(db, campaign.datasets, TODAY, MSK, campaign.history_days)
    window = (DAY_START, NOW + dt.timedelta(minutes=1))
    audience = build_audience(campaign.audience, frames, TODAY, MSK, campaign.params, window=window)
    assert len(audience) > 0


def _audiences(url: str) -> dict[str, list[tuple[int, ...]]]:
    """Each service campaign's audience on the shop at `url` for TODAY, as sorted id tuples."""
    engine = create_engine(url)
    out = {}
    try:
        for name in SERVICE:
            campaign = get_campaign(name)
            frames = extract(engine, campaign.datasets, TODAY, MSK, campaign.history_days)
            audience = build_audience(campaign.audience, frames, TODAY, MSK, campaign.params)
            keys = [k for k in ("customer_id", "order_id", "reset_id") if k in audience.columns]
            out[name] = sorted(tuple(int(v) for v in row) for row in audience[keys].itertuples(index=False))
    finally:
        engine.dispose()
    return out


@pytest.mark.integration
@pytest.mark.parametrize("kind", list(SERVERS))
def test_service_audiences_on_real_servers_match_sqlite(kind: str, tmp_path: Path) -> None:
    """The new table loads (COPY on PostgreSQL, executemany on MariaDB) and reads back the same."""
    sqlite_url = f"sqlite:///{tmp_path / 'shop.db'}"
    generate_demo_shop(sqlite_url, customers=1500, seed=11, today=TODAY)
    expected = _audiences(sqlite_url)
    assert all(expected.values())
    admin = create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
    name = f"shopmail_svc_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    url += "?charset=utf8mb4" if kind == "mariadb" else ""
    try:
        generate_demo_shop(url, customers=1500, seed=11, today=TODAY)
        assert _audiences(url) == expected
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()
