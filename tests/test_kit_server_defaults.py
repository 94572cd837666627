"""The platform kits under a real server's defaults: MariaDB as Debian ships it (strict `sql_mode`, no
time-zone tables), a database created with each common collation (tables in it, or some converted to
another one), the driver's own connection collation, and zero dates in the platform's tables.

Every case loads the platform's real DDL, installs the kit, fills a small shop, plants zero dates, and
then reads every contract dataset through fresh connections (never one the kit's installer used), runs
the data gate, lists what the kit could not map, and bridges one coupon into the platform's own table.
A view that the server refuses to read is named with its failing column.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, insert, text

from config.settings import Settings
from shopmail.campaigns import get_campaign
from shopmail.run.campaign_check import dry_run
from shopmail.shop import schema as shop_schema
from shopmail.shop.check_shop import check_shop
from shopmail.shop.contract import DatasetUnreadable
from shopmail.shop.coupon_outbox import outbox_table
from shopmail.shop.data_checks import run_gate
from shopmail.shop.extract import ZERO_DATES, day_end_utc, extract
from shopmail.shop.kits import apply_kit
from shopmail.state import state_db
from tests.kit_shops import (
    AS_OF,
    COLLATIONS,
    fill_bitrix,
    fill_opencart,
    fill_woocommerce,
    load_platform,
    mariadb_database,
)

pytestmark = pytest.mark.integration

FILL = {"opencart3": fill_opencart, "woocommerce_hpos": fill_woocommerce, "bitrix": fill_bitrix}
TZ = {"opencart3": "Europe/London", "woocommerce_hpos": "Europe/London", "bitrix": "Europe/Moscow"}
ZERO_DATE = "0000-00-00 00:00:00"
PLANT_ZERO_DATES = {  # a registration and an order (with its history) of zero date, as old imports leave them
    "opencart3": [
        f"UPDATE oc_customer SET date_added = '{ZERO_DATE}' WHERE customer_id = 3",
        f"UPDATE oc_order SET date_added = '{ZERO_DATE}' WHERE order_id = 105",
        f"UPDATE oc_order_history SET date_added = '{ZERO_DATE}' WHERE order_id = 106",
        f"UPDATE oc_product SET date_added = '{ZERO_DATE}' WHERE product_id = 7",
    ],
    "woocommerce_hpos": [  # WordPress's own column defaults
        f"UPDATE wp_users SET user_registered = '{ZERO_DATE}' WHERE ID = 3",
        f"UPDATE wp_posts SET post_date_gmt = '{ZERO_DATE}' WHERE ID = 107",
    ],
    "bitrix": [
        f"UPDATE b_user SET DATE_REGISTER = '{ZERO_DATE}' WHERE ID = 3",
        f"UPDATE b_sale_order SET DATE_INSERT = '{ZERO_DATE}' WHERE ID = 105",
        f"UPDATE b_sale_order_change SET DATE_CREATE = '{ZERO_DATE}' WHERE ORDER_ID = 106 LIMIT 1",
        "UPDATE b_user SET PERSONAL_BIRTHDAY = '0000-00-00' WHERE ID = 4",
    ],
}
OTHER_COLLATION = {"utf8mb4_unicode_ci": "utf8mb4_general_ci"}
MIXED = {  # tables a shop converted (or a plugin created) in another collation than the rest
    "opencart3": ["oc_order", "oc_product_description", "oc_coupon"],
    "woocommerce_hpos": ["wp_wc_customer_lookup", "wp_wc_orders", "wp_wc_order_addresses", "wp_posts"],
    "bitrix": ["b_sale_order", "b_iblock_element", "b_sale_discount_coupon", "b_sale_loc_name"],
}
PLATFORM_COUPON = {  # the platform's own coupon created by the bridge
    "opencart3": "SELECT COUNT(*) FROM oc_coupon WHERE code = :c",
    "woocommerce_hpos": "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_coupon' AND post_title = :c",
    "bitrix": "SELECT COUNT(*) FROM b_sale_discount_coupon WHERE COUPON = :c AND USER_ID = 1 AND TYPE = 2",
}
CASES = [(kit, collation, False) for kit in FILL for collation in COLLATIONS]
CASES += [(kit, "utf8mb4_unicode_ci", True) for kit in FILL]


def _kit_shop(url: str, kit: str, collation: str, mixed: bool) -> None:
    engine = create_engine(url)
    try:
        load_platform(engine, kit, collation)
        if mixed:
            other = OTHER_COLLATION.get(collation, "utf8mb4_unicode_ci")
            with engine.begin() as conn:
                for table in MIXED[kit]:
                    conn.execute(
                        text(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE {other}")
                    )
        apply_kit(engine, kit)
        FILL[kit](engine)
        with engine.begin() as conn:
            for statement in PLANT_ZERO_DATES[kit]:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.mark.parametrize(("kit", "collation", "mixed"), CASES)
def test_the_kit_reads_every_dataset_under_the_server_defaults(kit: str, collation: str, mixed: bool) -> None:
    with mariadb_database(collation) as url:
        _kit_shop(url, kit, collation, mixed)
        engine = create_engine(url)  # what Shopmail connects with: a fresh pool, the driver's collation
        try:
            with engine.connect() as conn:
                mode, connection = conn.execute(
                    text("SELECT @@SESSION.sql_mode, @@collation_connection")
                ).one()
                assert "STRICT_TRANS_TABLES" in mode  # the server's default strict mode, untouched
                assert connection == "utf8mb4_general_ci"  # pymysql's, not the kit's utf8mb4_unicode(_520)_ci
                assert conn.execute(text("SELECT COUNT(*) FROM shopmail_kit_unmapped")).scalar() == 0
            tz = ZoneInfo(TZ[kit])
            tables = tuple(
                t for t in shop_schema.CONTRACT_TABLES if kit != "woocommerce_hpos" or "cart" not in t
            )
            frames = extract(engine, tables, AS_OF, tz, 365)
            assert (
                len(frames["customers"]) >= 30
                and len(frames["products"]) >= 8
                and len(frames["orders"]) >= 20
            )
            assert frames["customers"].attrs[ZERO_DATES].get("registered_at") == 1  # read as NULL, reported
            report = run_gate(frames, AS_OF, day_end_utc(AS_OF, tz))
            assert report.success, report.failure_text()
            statuses = set(frames["orders"]["status"])
            assert statuses <= set(shop_schema.ORDER_STATUSES) and {"delivered", "cancelled"} <= statuses

            # Shopmail's coupon issue (an insert into the outbox) creates the platform's coupon
            code = f"BDAY-{kit[:2].upper()}{collation[-6:].upper()}"[:20]
            now = datetime(2026, 11, 23, 10)
            with engine.begin() as conn:
                conn.execute(
                    insert(outbox_table()).values(
                        code=code, customer_id=1, value=15, percent=True, expires_at=now + timedelta(days=7),
                        note="Подарок", campaign="birthday", message_key="birthday:k1", created_at=now,
                    )
                )  # fmt: skip
                assert conn.execute(text(PLATFORM_COUPON[kit]), {"c": code}).scalar() == 1
                used = conn.execute(
                    text("SELECT used FROM coupons WHERE code = :code"), {"code": code}
                ).scalar()
                assert used == 0

            found = check_shop(engine, {}, {}, now, coupon_table="shopmail_coupon_outbox")
            errors = [f for f in found.findings if f.level == "error"]
            allowed = {"carts", "cart_items"} if kit == "woocommerce_hpos" else set()
            assert all(f.dataset in allowed for f in errors), errors
            assert found.kit == kit and not [u for u in found.unmapped if u.what == "status"]
            assert found.coupons_writable, found.coupon_problem
        finally:
            engine.dispose()


OLD_STYLE_VIEWS = {  # what a kit must never do: the two failures of issue 25, in a shop's own views
    "registered_at": """
        CREATE FUNCTION old_utc(t DATETIME) RETURNS DATETIME DETERMINISTIC RETURN t - INTERVAL 0 MINUTE;
        CREATE OR REPLACE VIEW customers AS SELECT c.customer_id AS id, c.email, c.firstname AS first_name,
          old_utc(c.date_added) AS registered_at, c.newsletter AS marketing_consent FROM oc_customer c""",
    "status": """
        SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;
        CREATE FUNCTION old_status(s INT) RETURNS VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
          DETERMINISTIC RETURN IF(s = 5, 'delivered', 'received');
        CREATE OR REPLACE VIEW order_status_history AS SELECT h.order_id, old_status(h.order_status_id)
          AS status, h.date_added AS changed_at FROM oc_order_history h""",
}


@pytest.mark.parametrize("column", list(OLD_STYLE_VIEWS))
def test_a_view_the_server_refuses_is_named_with_its_column(column: str, tmp_path) -> None:
    """A zero date inside a stored function (error 1292) and a function result in another collation than
    the connection's (error 1267): the extraction, a campaign's dry run and `check-shop` name the view and
    the column."""
    with mariadb_database("utf8mb4_general_ci") as url:
        _kit_shop(url, "opencart3", "utf8mb4_general_ci", False)
        engine = create_engine(url)
        try:
            raw = engine.raw_connection()
            try:
                with raw.cursor() as cursor:
                    for statement in OLD_STYLE_VIEWS[column].split(";"):
                        if statement.strip():
                            cursor.execute(statement)
                raw.commit()
            finally:
                raw.invalidate()
                raw.close()
            dataset = "customers" if column == "registered_at" else "order_status_history"
            code = "1292" if column == "registered_at" else "1267"
            with pytest.raises(DatasetUnreadable) as caught:
                extract(engine, ["customers", "orders"], AS_OF, ZoneInfo("Europe/London"), 365)
            error = caught.value
            assert error.dataset == dataset and list(error.columns) == [column], error.columns
            assert code in error.columns[column] and f"`{dataset}`" in str(error)
            found = check_shop(engine, {}, {}, datetime(2026, 11, 23, 12))
            named = [f for f in found.findings if f.level == "error" and f.dataset == dataset]
            assert named and named[0].column == column and code in named[0].message, found.findings

            settings = Settings(_env_file=None, shop_db_url=url, data_dir=tmp_path, timezone="Europe/London")
            state = state_db.upgrade(settings.state_url_resolved)
            outcome = dry_run(
                get_campaign("order_shipped"), AS_OF, settings, engine, state, datetime(2026, 11, 23)
            )
            assert not outcome.completed and outcome.stage == "extract"
            assert (outcome.dataset, outcome.column) == (dataset, column) and code in outcome.reason
        finally:
            engine.dispose()
