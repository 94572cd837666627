"""Unit tests of the deterministic demo-shop generator (SQLite, no Prefect)."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from shopmail.devtools.demo_shop import generate_demo_shop, shop_now
from shopmail.shop import schema

TODAY = dt.date(2026, 3, 15)
CUSTOMERS = 2000
MSK = ZoneInfo("Europe/Moscow")
HAPPY_PATH = ["received", "paid", "accepted", "shipped", "delivered"]
EMAIL_RE = re.compile(r"^[a-z0-9._-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")


def _build(path: Path, seed: int, customers: int = CUSTOMERS, today: dt.date = TODAY) -> Any:
    return generate_demo_shop(f"sqlite:///{path}", customers=customers, seed=seed, today=today)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, dict[str, int]]]:
    path = tmp_path_factory.mktemp("shop") / "shop.db"
    counts = _build(path, seed=7)
    engine = create_engine(f"sqlite:///{path}")
    yield engine, counts
    engine.dispose()


@pytest.fixture(scope="module")
def db(shop: tuple[Engine, dict[str, int]]) -> Engine:
    return shop[0]


def _contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every contract table's rows, ordered by primary key."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        out = {
            t.name: conn.execute(select(t).order_by(*t.primary_key.columns)).all()
            for t in schema.metadata.sorted_tables
        }
    engine.dispose()
    return out


def _scalar(db: Engine, sql: str) -> Any:
    with db.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def _rows(db: Engine, sql: str) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(text(sql)).all())


def test_counts_are_returned_and_match_the_database(shop: tuple[Engine, dict[str, int]]) -> None:
    db, counts = shop
    assert set(counts) == set(schema.CONTRACT_TABLES)
    with db.connect() as conn:
        for table in schema.metadata.sorted_tables:
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == counts[table.name]
    assert counts["customers"] == CUSTOMERS
    assert counts["products"] == 200
    assert 2.0 * CUSTOMERS <= counts["orders"] <= 3.2 * CUSTOMERS
    assert all(counts[name] > 0 for name in counts)


def test_same_seed_and_day_give_identical_data_other_seed_differs(
    shop: tuple[Engine, dict[str, int]], tmp_path: Path
) -> None:
    first = Path(shop[0].url.database or "")
    _build(tmp_path / "again.db", seed=7)
    _build(tmp_path / "other.db", seed=8)
    reference = _contents(first)
    assert _contents(tmp_path / "again.db") == reference
    other = _contents(tmp_path / "other.db")
    for table in ("customers", "orders", "order_items", "coupons"):
        assert other[table] != reference[table]


@pytest.mark.parametrize(
    ("child", "column", "parent"),
    [
        ("orders", "customer_id", "customers"),
        ("order_items", "order_id", "orders"),
        ("order_items", "product_id", "products"),
        ("order_status_history", "order_id", "orders"),
        ("carts", "customer_id", "customers"),
        ("cart_items", "cart_id", "carts"),
        ("cart_items", "product_id", "products"),
        ("coupons", "customer_id", "customers"),
    ],
)
def test_referential_integrity(db: Engine, child: str, column: str, parent: str) -> None:
    orphans = _scalar(
        db,
        f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON p.id = c.{column} "
        f"WHERE c.{column} IS NOT NULL AND p.id IS NULL",
    )
    assert orphans == 0


def test_every_order_has_items_and_totals_equal_item_sums(db: Engine) -> None:
    mismatches = _rows(
        db,
        "SELECT o.id, o.total, s.items FROM orders o LEFT JOIN "
        "(SELECT order_id, sum(qty * price) AS items FROM order_items GROUP BY order_id) s "
        "ON s.order_id = o.id WHERE s.items IS NULL OR abs(o.total - s.items) > 0.005",
    )
    assert mismatches == []
    assert _scalar(db, "SELECT count(*) FROM orders WHERE currency <> 'RUB'") == 0


def test_status_history_is_consistent_and_never_in_the_future(db: Engine) -> None:
    history: dict[int, list[tuple[dt.datetime, str]]] = defaultdict(list)
    with db.connect() as conn:
        for order_id, status, changed_at in conn.execute(select(schema.order_status_history)):
            history[order_id].append((changed_at, status))
        orders = conn.execute(
            select(schema.orders.c.id, schema.orders.c.status, schema.orders.c.created_at,
                   schema.orders.c.tracking_number)
        ).all()  # fmt: skip
    end_of_today = dt.datetime.combine(TODAY + dt.timedelta(days=1), dt.time(0), MSK)
    end_of_today_utc = end_of_today.astimezone(dt.UTC).replace(tzinfo=None)
    assert shop_now(TODAY) < end_of_today_utc
    assert len(history) == len(orders)
    for order_id, status, created_at, tracking in orders:
        steps = sorted(history[order_id])
        times = [t for t, _ in steps]
        names = [s for _, s in steps]
        assert times == sorted(set(times)), order_id  # strictly increasing
        assert times[-1] <= shop_now(TODAY) < end_of_today_utc
        assert times[0] == created_at
        if names[-1] == "cancelled":
            assert names in (["received", "cancelled"], ["received", "paid", "cancelled"])
        else:
            assert names == HAPPY_PATH[: len(names)], order_id
        assert status == names[-1]
        assert (tracking is not None) == ("shipped" in names)
    statuses = [s for _, s, _, _ in orders]
    assert 0.03 < statuses.count("cancelled") / len(statuses) < 0.10
    assert {"accepted", "shipped", "delivered"} <= set(statuses)  # some still in progress


def _delivered_on(db: Engine, days_ago: int) -> list[tuple[int, dt.datetime]]:
    """(customer_id, delivered_at) of orders delivered on the Moscow date `days_ago` before TODAY."""
    day = TODAY - dt.timedelta(days=days_ago)
    start = dt.datetime.combine(day, dt.time(0), MSK).astimezone(dt.UTC).replace(tzinfo=None)
    with db.connect() as conn:
        return list(
            conn.execute(
                select(schema.orders.c.customer_id, schema.order_status_history.c.changed_at)
                .join(schema.orders, schema.orders.c.id == schema.order_status_history.c.order_id)
                .where(schema.order_status_history.c.status == "delivered")
                .where(schema.order_status_history.c.changed_at >= start)
                .where(schema.order_status_history.c.changed_at < start + dt.timedelta(days=1))
            ).all()
        )


@pytest.mark.parametrize("days_ago", [7, 14])
def test_orders_delivered_exactly_n_days_ago_some_reordered(db: Engine, days_ago: int) -> None:
    delivered = _delivered_on(db, days_ago)
    assert len(delivered) >= 12  # 0.6% of customers are injected per day, plus organic ones
    with db.connect() as conn:
        last_order = dict(
            conn.execute(
                select(schema.orders.c.customer_id, func.max(schema.orders.c.created_at)).group_by(
                    schema.orders.c.customer_id
                )
            ).all()
        )
    reordered = [c for c, at in delivered if last_order[c] > at]
    assert reordered, "some customers must have ordered again after the delivery"
    assert len(reordered) < len(delivered), "most must still be wake-up candidates"


def test_customer_proportions(db: Engine) -> None:
    n = CUSTOMERS
    share = {g: c / n for g, c in _rows(db, "SELECT gender, count(*) FROM customers GROUP BY gender")}
    assert 0.50 < share["f"] < 0.60
    assert 0.37 < share["m"] < 0.47
    assert 0.01 < share[None] < 0.06
    assert 0.65 < _scalar(db, "SELECT avg(marketing_consent) FROM customers") < 0.75
    assert 0.25 < _scalar(db, "SELECT avg(discount_card IS NOT NULL) FROM customers") < 0.35
    assert 0.80 < _scalar(db, "SELECT avg(birth_date IS NOT NULL) FROM customers") < 0.90
    assert 0.02 < _scalar(db, "SELECT avg(language = 'en') FROM customers") < 0.08
    assert _scalar(db, "SELECT count(DISTINCT discount_card) = count(discount_card) FROM customers")
    assert _scalar(db, "SELECT count(*) FROM customers WHERE birth_date LIKE '%-02-29'") > 0
    assert _scalar(db, "SELECT count(*) FROM customers WHERE birth_date LIKE '%-03-15'") > 0
    top = _rows(db, "SELECT city FROM customers GROUP BY city ORDER BY count(*) DESC LIMIT 2")
    assert [c for (c,) in top] == ["Москва", "Санкт-Петербург"]


def test_some_broken_emails_and_valid_ones_are_unique(db: Engine) -> None:
    emails = [e for (e,) in _rows(db, "SELECT email FROM customers")]
    broken = [e for e in emails if e is None or not EMAIL_RE.match(e)]
    valid = [e for e in emails if e is not None and EMAIL_RE.match(e)]
    assert 0 < len(broken) < 0.02 * len(emails)
    assert len(set(valid)) == len(valid)


def test_fresh_activity_carts_coupons_products(db: Engine) -> None:
    now = shop_now(TODAY)
    with db.connect() as conn:
        carts = conn.execute(select(schema.carts.c.updated_at)).scalars().all()
        coupons = conn.execute(select(schema.coupons.c.code, schema.coupons.c.expires_at)).all()
        created = conn.execute(select(schema.products.c.created_at)).scalars().all()
    assert 0.03 * CUSTOMERS < len(carts) < 0.07 * CUSTOMERS
    assert all(dt.timedelta(hours=1) <= now - t <= dt.timedelta(hours=72) for t in carts)
    codes = [c for c, _ in coupons]
    assert len(set(codes)) == len(codes) and all(c == c.upper() for c in codes)
    assert any(dt.timedelta(0) < e - now < dt.timedelta(days=7) for _, e in coupons)
    assert any(now - t < dt.timedelta(days=7) for t in created)


def test_leap_day_today_and_progress(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    counts = generate_demo_shop(
        f"sqlite:///{tmp_path / 'leap.db'}",
        customers=300,
        seed=1,
        today=dt.date(2028, 2, 29),
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    assert counts["customers"] == 300
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["schema", "products", "customers", "indexes"]
    for stage in stages:
        mine = [(d, t) for s, d, t in calls if s == stage]
        assert mine[0][0] == 0 and mine[-1][0] == mine[-1][1]


@pytest.mark.parametrize("kwargs", [{"customers": 0}, {"seed": -1}])
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        generate_demo_shop(f"sqlite:///{tmp_path / 'x.db'}", **kwargs)


def test_the_default_demo_day_never_puts_orders_in_the_future() -> None:
    """`make demo` at 01:00 Moscow time makes yesterday's shop (its `now` is 06:00 shop time): no demo
    order lies after the real clock, so the data checks' future-order guard never trips on the demo."""
    from shopmail.devtools.demo_shop import latest_demo_day, shop_now

    before_six = dt.datetime(2026, 11, 29, 22, 0)  # 01:00 on 30 November in Moscow (UTC)
    after_six = dt.datetime(2026, 11, 30, 4, 0)  # 07:00 in Moscow
    assert latest_demo_day(before_six) == dt.date(2026, 11, 29)
    assert latest_demo_day(after_six) == dt.date(2026, 11, 30)
    for now in (before_six, after_six):
        assert shop_now(latest_demo_day(now)) <= now
