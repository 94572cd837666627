"""Bad shop data never crashes a run: unparsable times, impossible histories, references to missing rows,
times in the future, implausible birth dates and empty tables are quarantined, treated as unknown or stop
the run with a clear message (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import select, text

from config.settings import Settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.vocabulary import checks_table
from shopmail.shop.data_checks import clean_frames, run_gate
from shopmail.shop.extract import UNPARSABLE, day_end_utc, extract, parse_times
from shopmail.state import state_db
from shopmail.state.schema import quarantined_rows, run_summaries, send_ledger
from tests.shop_oracle import expected_wakeup
from tests.test_shop_databases import SERVERS, _scratch_database

AS_OF = date(2026, 11, 23)
MSK = ZoneInfo("Europe/Moscow")
DATASETS = ["customers", "orders", "order_items", "products", "carts", "cart_items", "coupons"]


@pytest.fixture
def demo_shop(settings: Settings) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=7, today=AS_OF)
    return settings


def _sql(settings: Settings, *statements: str) -> None:
    with get_engine(settings.shop_url_resolved).begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def _gate(settings: Settings):
    frames = extract(get_engine(settings.shop_url_resolved), DATASETS, AS_OF, MSK, 365)
    return frames, run_gate(frames, AS_OF, day_end_utc(AS_OF, MSK))


def _found(gate, dataset: str, check: str, column: str) -> int:
    return sum(
        r.unexpected for r in gate.results if (r.dataset, r.check, r.column) == (dataset, check, column)
    )


def test_parse_times_flags_text_and_never_raises() -> None:
    raw = pd.Series(
        [
            "2026-11-23 10:00:00.000000",
            "2026-11-23",
            "yesterday",
            "2026-13-45",
            None,
            "0000-00-00 00:00:00",
            17,
        ],
        dtype=object,
    )
    parsed, bad = parse_times(raw, "created_at")
    assert str(parsed.dtype) == "datetime64[us]"
    assert parsed[0] == pd.Timestamp("2026-11-23 10:00") and parsed[1] == pd.Timestamp("2026-11-23")
    assert bad.tolist() == [False, False, True, True, False, False, True]  # zero date = NULL, not bad
    days, bad_days = parse_times(pd.Series(["1990-05-01", "not a date"], dtype=object), "birth_date")
    assert str(days.dtype) == "datetime64[s]" and bad_days.tolist() == [False, True]


def test_text_in_time_columns_is_quarantined_not_a_crash(demo_shop: Settings) -> None:
    """SQLite stores any text in a DATE/DATETIME column; SQLAlchemy's own parsing raised on it."""
    clean, _ = _gate(demo_shop)
    order = int(clean["orders"]["id"].iloc[0])
    cart = int(clean["carts"]["id"].iloc[0])
    _sql(
        demo_shop,
        "UPDATE customers SET birth_date = 'not a date' WHERE id = 1",
        "UPDATE customers SET registered_at = '2026-10-45 10:00:00' WHERE id = 2",
        f"UPDATE orders SET created_at = '2026-10-45 10:00' WHERE id = {order}",
        f"UPDATE carts SET updated_at = 'yesterday' WHERE id = {cart}",
    )
    frames, gate = _gate(demo_shop)
    for name in DATASETS:  # the same dtypes as on clean data
        assert frames[name].dtypes.to_dict() == clean[name].dtypes.to_dict(), name
    assert frames["orders"].attrs[UNPARSABLE] == {
        "created_at": [int(frames["orders"].index[frames["orders"]["id"] == order][0])]
    }
    assert gate.success, gate.failure_text()
    assert _found(gate, "customers", "parsable_time", "registered_at") == 1
    assert _found(gate, "orders", "parsable_time", "created_at") == 1
    assert _found(gate, "carts", "parsable_time", "updated_at") == 1
    assert _found(gate, "customers", "parsable_time", "birth_date") == 1  # optional: unknown, not quarantined
    assert gate.quarantined_keys("customers") >= {2} and 1 not in gate.quarantined_keys("customers")
    assert order in gate.quarantined_keys("orders") and cart in gate.quarantined_keys("carts")
    row = "| orders | created_at | must be a readable time | row set aside, never mailed |"
    assert row in checks_table(gate.results)
    cleaned = clean_frames(frames, gate)
    assert order not in set(cleaned["orders"]["id"]) and order not in set(cleaned["order_items"]["order_id"])
    assert cart not in set(cleaned["cart_items"]["cart_id"])


def test_too_many_unparsable_times_stop_the_run(demo_shop: Settings) -> None:
    _sql(demo_shop, "UPDATE carts SET updated_at = 'yesterday'")
    _, gate = _gate(demo_shop)
    assert not gate.success and "carts.updated_at: parsable_time" in gate.failure_text()


def test_impossible_rows_are_quarantined(demo_shop: Settings) -> None:
    clean, _ = _gate(demo_shop)
    orders = clean["orders"]
    delivered = orders[orders["delivered_at"].notna()]
    late, bad_customer = int(delivered["id"].iloc[0]), int(delivered["id"].iloc[1])
    cart, item_order = int(clean["carts"]["id"].iloc[0]), int(clean["order_items"]["order_id"].iloc[-1])
    _sql(
        demo_shop,
        # delivered before it was shipped
        f"UPDATE order_status_history SET changed_at = datetime(changed_at, '-30 days') "
        f"WHERE order_id = {late} AND status = 'delivered'",
        f"UPDATE orders SET customer_id = 999999 WHERE id = {bad_customer}",
        f"UPDATE order_items SET product_id = 888888 WHERE rowid = (SELECT max(rowid) FROM order_items "
        f"WHERE order_id = {item_order})",
        f"UPDATE carts SET updated_at = '2030-01-01 00:00:00' WHERE id = {cart}",
        "UPDATE customers SET birth_date = '1800-11-23' WHERE id IN (3, 4)",
        "UPDATE customers SET birth_date = '2025-01-01' WHERE id = 5",  # not yet 5 years old
    )
    frames, gate = _gate(demo_shop)
    assert gate.success, gate.failure_text()
    assert _found(gate, "orders", "status_history_in_order", "status") == 1
    assert _found(gate, "orders", "references_customers", "customer_id") == 1
    assert _found(gate, "order_items", "references_products", "product_id") == 1
    assert _found(gate, "carts", "not_in_future", "updated_at") == 1
    assert _found(gate, "customers", "plausible_age", "birth_date") == 3
    assert {late, bad_customer} <= gate.quarantined_keys("orders")
    assert item_order in gate.quarantined_keys("order_items") and cart in gate.quarantined_keys("carts")
    assert not gate.quarantined_keys("customers") & {3, 4, 5}  # still mailable for other campaigns
    cleaned = clean_frames(frames, gate)
    people = cleaned["customers"].set_index("id")
    assert people.loc[[3, 4, 5], "birth_date"].isna().all() and people["birth_date"].notna().sum() > 1000


def test_an_empty_customers_table_is_a_clear_failure(demo_shop: Settings) -> None:
    _sql(demo_shop, "DELETE FROM customers")
    _, gate = _gate(demo_shop)
    assert not gate.success
    assert "the customers table is empty as of 2026-11-23: check SHOPMAIL_SHOP_DB_URL" in gate.failure_text()


# --- whole runs ---------------------------------------------------------------------------------


def _ledger(settings: Settings, campaign: str) -> list:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        return conn.execute(select(send_ledger).where(send_ledger.c.campaign == campaign)).all()


def _quarantined(settings: Settings, table: str) -> dict[str, str]:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(select(quarantined_rows).where(quarantined_rows.c.table_name == table)).all()
    return {r.row_key: r.check_name for r in rows}


@pytest.mark.flow
def test_impossible_status_history_gets_no_wakeup_mail_and_is_reported(prefect_harness, demo_shop) -> None:
    from flows.campaign import campaign_flow

    shop = get_engine(demo_shop.shop_url_resolved)
    expected = expected_wakeup(shop, AS_OF, holdout=False)
    customer, order = next(iter(expected.items()))
    _sql(  # delivered a year before the order was created; another order's date is not a date
        demo_shop,
        f"UPDATE order_status_history SET changed_at = datetime(changed_at, '-365 days') "
        f"WHERE order_id = {order} AND status = 'delivered'",
    )
    other_customer, other_order = list(expected.items())[1]
    _sql(demo_shop, f"UPDATE orders SET created_at = '2026-10-45 12:00' WHERE id = {other_order}")

    report = campaign_flow(campaign="wakeup", as_of=AS_OF)
    mailed = {r.customer_id for r in _ledger(demo_shop, "wakeup")}
    assert customer not in mailed and other_customer not in mailed
    assert mailed and report.counts()["sent"] > 0
    assert "status_history_in_order" in _quarantined(demo_shop, "orders")[str(order)]
    assert "parsable_time" in _quarantined(demo_shop, "orders")[str(other_order)]
    row = "| orders | status | status changes must be in time order | row set aside, never mailed |"
    assert row in report.checks_markdown
    with state_db.upgrade(demo_shop.state_url_resolved).connect() as conn:
        assert conn.execute(select(run_summaries.c.status)).scalar_one() == "completed"


@pytest.mark.flow
def test_no_birthday_mail_to_a_226_year_old(prefect_harness, demo_shop) -> None:
    from flows.campaign import campaign_flow

    born_today = f"strftime('%m-%d', birth_date) = '{AS_OF:%m-%d}'"
    with get_engine(demo_shop.shop_url_resolved).connect() as conn:
        ids = conn.execute(text(f"SELECT id FROM customers WHERE {born_today} ORDER BY id")).scalars().all()
    assert len(ids) >= 4
    ancient, broken = ids[:2], ids[2]
    _sql(
        demo_shop,
        f"UPDATE customers SET birth_date = '1800-{AS_OF:%m-%d}' WHERE id IN ({ancient[0]}, {ancient[1]})",
        f"UPDATE customers SET birth_date = 'not a date' WHERE id = {broken}",
    )
    report = campaign_flow(campaign="birthday", as_of=AS_OF, preapproved=True)
    mailed = {r.customer_id for r in _ledger(demo_shop, "birthday")}
    assert mailed and not mailed & {*ancient, broken}
    row = "| customers | birth_date | age must be plausible | value treated as missing | "
    assert row in report.checks_markdown
    assert "| 2 | ok |" in next(
        line for line in report.checks_markdown.splitlines() if "age must be plausible" in line
    )
    assert str(ancient[0]) not in _quarantined(demo_shop, "customers")  # unknown birthday, still mailable


@pytest.mark.flow
def test_an_empty_customers_table_stops_the_run_with_a_clear_message(prefect_harness, demo_shop) -> None:
    from flows.campaign import campaign_flow
    from tasks.validate import DataCheckFailed

    _sql(demo_shop, "DELETE FROM customers")
    with pytest.raises(DataCheckFailed, match="the customers table is empty .*SHOPMAIL_SHOP_DB_URL"):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert _ledger(demo_shop, "wakeup") == []
    with state_db.upgrade(demo_shop.state_url_resolved).connect() as conn:
        assert conn.execute(select(run_summaries.c.status)).scalar_one() == "blocked"


# --- PostgreSQL: the same extract path --------------------------------------------------------------


@pytest.fixture
def pg_shop(settings: Settings) -> Iterator[str]:
    gen = _scratch_database(SERVERS["postgresql"])
    url = next(gen)
    generate_demo_shop(url, customers=300, seed=5, today=AS_OF)
    try:
        yield url
    finally:
        next(gen, None)


@pytest.mark.integration
def test_postgresql_extract_gives_the_same_types_and_checks(pg_shop: str, demo_shop: Settings) -> None:
    """PostgreSQL cannot store text in a timestamp column; the extract path (driver-parsed times) keeps
    the dtypes of SQLite's text path and the new checks work there too."""
    engine = get_engine(pg_shop)
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET birth_date = DATE '1800-01-01' WHERE id = 1"))
        conn.execute(
            text(
                "UPDATE carts SET updated_at = TIMESTAMP '2030-01-01' WHERE id = (SELECT min(id) FROM carts)"
            )
        )
    frames = extract(engine, DATASETS, AS_OF, MSK, 365)
    sqlite_frames, _ = _gate(demo_shop)
    for name in DATASETS:
        assert frames[name].dtypes.to_dict() == sqlite_frames[name].dtypes.to_dict(), name
        assert frames[name].attrs[UNPARSABLE] == {}
    gate = run_gate(frames, AS_OF, day_end_utc(AS_OF, MSK))
    assert gate.failures == []  # 1 of 14 carts: over 5 %, but within MIN_BAD_ROWS: set aside only
    assert _found(gate, "customers", "plausible_age", "birth_date") == 1
    assert _found(gate, "carts", "not_in_future", "updated_at") == 1
    assert isinstance(frames["orders"]["created_at"].iloc[0], pd.Timestamp)
    assert frames["orders"]["created_at"].max() < datetime(2026, 11, 24)
