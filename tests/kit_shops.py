"""Small platform shops on MariaDB for the kit tests: each platform's real DDL (tests/platforms/), loaded
into a fresh database created with the collation under test (the server's default strict `sql_mode`
left as it is), filled as the platform itself writes its tables (OpenCart 3, WooCommerce with HPOS,
1C-Bitrix), plus the problems a real shop has (`plant`)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from shopmail.shop.kits import sql_statements

PLATFORMS = Path(__file__).parent / "platforms"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/"
AS_OF = date(2026, 11, 23)
SHOP_URL = "https://tea-house.tests.example"  # the test shops' storefront (conftest.PRODUCTION_ENV)
DAY = datetime(2026, 11, 23)
# the database collations the kits are tested under: MariaDB's default, OpenCart's, WordPress's, and MySQL 8's
# utf8mb4_0900_ai_ci as MariaDB emulates it (UCA 14.0.0, accent- and case-insensitive, NO PAD)
COLLATIONS = (
    "utf8mb4_general_ci",
    "utf8mb4_unicode_ci",
    "utf8mb4_unicode_520_ci",
    "utf8mb4_uca1400_nopad_ai_ci",
)
TABLE_OPTIONS = re.compile(r"DEFAULT (?:CHARSET=|CHARACTER SET )utf8mb4 COLLATE=?\s*\w+")


@contextmanager
def mariadb_database(collation: str) -> Iterator[str]:
    """A throw-away MariaDB database created with `collation` (server defaults otherwise); its URL is
    what a shop's engineer writes (`?charset=utf8mb4`: the driver's own connection collation)."""
    admin = create_engine(MARIADB, isolation_level="AUTOCOMMIT")
    name = f"shopmail_kit_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE {collation}"))
    try:
        yield f"{MARIADB}{name}?charset=utf8mb4"
    finally:
        from shopmail.db import get_engine

        get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def platform_ddl(kit: str, collation: str) -> str:
    """The platform's DDL with its tables in `collation` (a shop whose tables were created or converted
    in it; Bitrix's tables have no options and take the database's)."""
    ddl = (PLATFORMS / f"{kit}_schema.sql").read_text(encoding="utf-8")
    return TABLE_OPTIONS.sub(f"DEFAULT CHARSET=utf8mb4 COLLATE={collation}", ddl)


def load_platform(engine: Engine, kit: str, collation: str) -> None:
    run_script(engine, platform_ddl(kit, collation))


def run_script(engine: Engine, script: str) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            for statement in sql_statements(script):
                cursor.execute(statement)
        raw.commit()
    finally:
        raw.invalidate()  # no session state (SET NAMES ...) for the pool's next user
        raw.close()


def insert_rows(conn, table: str, rows: list[dict]) -> None:
    """Insert `rows` into `table`; rows naming different columns go in separate statements (a column a
    row leaves out gets the table's default, as the platform's own INSERTs do)."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for columns, group in groups.items():
        quoted = ", ".join(f"`{c}`" for c in columns)
        values = ", ".join(f":{c}" for c in columns)
        conn.execute(text(f"INSERT INTO `{table}` ({quoted}) VALUES ({values})"), group)


# --- OpenCart 3.0.x --------------------------------------------------------------------------------

OC_BIRTHDAY_FIELD, OC_GENDER_FIELD, OC_FEMALE, OC_MALE = 1, 2, 5, 6


def fill_opencart(engine: Engine) -> None:
    """A small OpenCart shop as OpenCart writes it (htmlspecialchars'd names, JSON custom fields)."""
    first = ["Anna", "Tom", "Grace", "Oliver", "Mia", "Jack", "Ella", "Harry", "Lily", "Noah"]
    last = ["Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts", "Walker", "Wright"]
    customers, addresses = [], []
    for i in range(1, 31):
        fields = {str(OC_GENDER_FIELD): str(OC_FEMALE if i % 2 else OC_MALE)}
        if i % 3:
            fields[str(OC_BIRTHDAY_FIELD)] = f"{1970 + i}-{(i % 12) + 1:02d}-{(i % 27) + 1:02d}"
        customers.append(
            {
                "customer_id": i,
                "customer_group_id": 1,
                "store_id": 0,
                "language_id": 1,
                "firstname": first[i % 10],
                "lastname": last[i % 10],
                "email": f"customer{i}@mail.example",
                "telephone": "",
                "fax": "",
                "password": "x",
                "cart": None,
                "wishlist": None,
                "newsletter": 1,
                "address_id": i,
                "custom_field": json.dumps(fields),
                "ip": "",
                "status": 1,
                "safe": 0,
                "token": "",
                "code": "",
                "date_added": datetime(2025, 1, 1) + timedelta(days=i * 7),
            }
        )
        addresses.append(
            {
                "address_id": i,
                "customer_id": i,
                "firstname": first[i % 10],
                "lastname": last[i % 10],
                "company": "",
                "address_1": f"{i} High Street",
                "address_2": "",
                "city": "London" if i % 2 else "Manchester",
                "postcode": "E1 6AN",
                "country_id": 222,
                "zone_id": 0,
                "custom_field": "",
                "default": 1,
            }
        )
    # the birthday girl: O'Brien as OpenCart stores it, born on 23 November
    customers[0].update(
        lastname="O&#039;Brien",
        firstname="Siobh&aacute;n &quot;Shiv&quot;",
        custom_field=json.dumps({"1": "1990-11-23", "2": str(OC_FEMALE)}),
    )
    customers[0]["firstname"] = "&quot;Shiv&quot;"
    customers[1]["newsletter"] = 0  # no consent: never a marketing mail
    products = []
    descriptions = []
    for p in range(1, 9):
        products.append(
            {
                "product_id": p,
                "model": f"M{p}",
                "sku": "",
                "upc": "",
                "ean": "",
                "jan": "",
                "isbn": "",
                "mpn": "",
                "location": "",
                "quantity": 0 if p == 8 else 10 * p,
                "stock_status_id": 7,
                "image": f"catalog/p{p}.jpg",
                "manufacturer_id": 1 + p % 2,
                "shipping": 1,
                "price": "24.9900" if p == 1 else f"{10 + p}.5000",
                "points": 0,
                "tax_class_id": 9,
                "date_available": "2025-01-01",
                "weight": 0,
                "weight_class_id": 1,
                "length": 0,
                "width": 0,
                "height": 0,
                "length_class_id": 1,
                "subtract": 1,
                "minimum": 1,
                "sort_order": 0,
                "status": 1,
                "viewed": 0,
                "date_added": datetime(2025, 1, 1),
                "date_modified": datetime(2025, 1, 1),
            }
        )
        name = "The &quot;Classic&quot; Mug" if p == 1 else f"Tea &amp; Biscuits No {p}"
        descriptions.append(
            {
                "product_id": p,
                "language_id": 1,
                "name": name,
                "description": "",
                "tag": "",
                "meta_title": name,
                "meta_description": "",
                "meta_keyword": "",
            }
        )
    orders, items, history = [], [], []

    def order(oid, customer_id, status, created, steps, lines, first_name="", last_name="", email=""):
        total = sum(qty * float(products[pid - 1]["price"]) for pid, qty in lines)
        orders.append(
            {
                "order_id": oid,
                "invoice_no": 0,
                "invoice_prefix": "INV-",
                "store_id": 0,
                "store_name": "Tea Shop",
                "store_url": "https://tea-house.tests.example/",
                "customer_id": customer_id,
                "customer_group_id": 1,
                "firstname": first_name or customers[customer_id - 1]["firstname"],
                "lastname": last_name or customers[customer_id - 1]["lastname"],
                "email": email or customers[customer_id - 1]["email"],
                "telephone": "",
                "fax": "",
                "custom_field": "[]",
                **{
                    f"{kind}_{field}": ""
                    for kind in ("payment", "shipping")
                    for field in (
                        "firstname",
                        "lastname",
                        "company",
                        "address_1",
                        "address_2",
                        "postcode",
                        "country",
                        "zone",
                        "address_format",
                        "custom_field",
                        "method",
                    )
                },
                "payment_city": "Leeds",
                "shipping_city": "Leeds",
                "payment_country_id": 222,
                "payment_zone_id": 0,
                "shipping_country_id": 222,
                "shipping_zone_id": 0,
                "comment": "",
                "total": f"{total:.4f}",
                "order_status_id": status,
                "affiliate_id": 0,
                "commission": 0,
                "marketing_id": 0,
                "tracking": "",
                "language_id": 1,
                "currency_id": 1,
                "currency_code": "GBP",
                "currency_value": "1.00000000",
                "ip": "",
                "forwarded_ip": "",
                "user_agent": "",
                "accept_language": "",
                "date_added": created,
                "date_modified": created,
            }
        )
        for pid, qty in lines:
            price = products[pid - 1]["price"]
            items.append(
                {
                    "order_id": oid,
                    "product_id": pid,
                    "name": descriptions[pid - 1]["name"],
                    "model": f"M{pid}",
                    "quantity": qty,
                    "price": price,
                    "total": f"{qty * float(price):.4f}",
                    "tax": 0,
                    "reward": 0,
                }
            )
        for status_id, at in steps:
            history.append(
                {
                    "order_id": oid,
                    "order_status_id": status_id,
                    "notify": 1,
                    "comment": "",
                    "date_added": at,
                }
            )

    old = DAY - timedelta(days=40)
    for i in range(3, 25):  # delivered history for most customers
        created = old + timedelta(days=i % 9, hours=i)
        steps = [(1, created), (2, created + timedelta(hours=1)), (3, created + timedelta(days=1))]
        steps.append((5, created + timedelta(days=3)))
        order(100 + i, i, 5, created, steps, [(1 + i % 7, 1), (2, 2)])
    order(200, 4, 7, old, [(1, old), (7, old + timedelta(hours=2))], [(3, 1)])  # cancelled
    order(201, 5, 2, DAY - timedelta(days=1), [(1, DAY - timedelta(days=1))], [(4, 1)])  # processing
    order(202, 6, 10, old, [(1, old), (10, old + timedelta(hours=1))], [(5, 1)])  # failed: unmapped
    order(203, 7, 0, DAY, [], [(5, 1)])  # never confirmed ("missing order"): not an order
    # a guest order, shipped today: the order-status mail goes to the guest
    placed = DAY - timedelta(days=2)
    order(
        300,
        0,
        3,
        placed,
        [(1, placed), (2, placed + timedelta(hours=1)), (3, DAY + timedelta(hours=10))],
        [(1, 2), (2, 1)],
        first_name="Se&#039;an",
        last_name="D&#039;Arcy",
        email="guest@mail.example",
    )
    carts = [  # abandoned today at 10:00 by customers 25..29 (no order since); an admin (api) cart
        {
            "api_id": 0,
            "customer_id": c,
            "session_id": f"s{c}",
            "product_id": 1 + c % 5,
            "subscription_plan_id": 0,
            "option": "[]",
            "quantity": 1,
            "override": 0,
            "price": 0,
            "date_added": DAY + timedelta(hours=10),
        }
        for c in range(25, 30)
    ] + [
        {
            "api_id": 1,
            "customer_id": 3,
            "session_id": "api",
            "product_id": 2,
            "subscription_plan_id": 0,
            "option": "[]",
            "quantity": 1,
            "override": 0,
            "price": 0,
            "date_added": DAY + timedelta(hours=9),
        }
    ]
    coupon = {  # a shop coupon of its own: not Shopmail's, not in the contract
        "name": "Spring",
        "code": "SPRING10",
        "type": "P",
        "discount": 10,
        "logged": 0,
        "shipping": 0,
        "total": 0,
        "date_start": "2026-03-01",
        "date_end": "2026-04-01",
        "uses_total": 100,
        "uses_customer": 1,
        "status": 1,
        "date_added": datetime(2026, 3, 1),
    }
    with engine.begin() as conn:
        insert_rows(
            conn,
            "oc_language",
            [
                {
                    "language_id": 1,
                    "name": "English",
                    "code": "en-gb",
                    "locale": "en",
                    "image": "gb.png",
                    "directory": "english",
                    "sort_order": 1,
                    "status": 1,
                }
            ],
        )
        insert_rows(
            conn,
            "oc_order_status",
            [
                {"order_status_id": s, "language_id": 1, "name": n}
                for s, n in (
                    (1, "Pending"),
                    (2, "Processing"),
                    (3, "Shipped"),
                    (5, "Complete"),
                    (7, "Canceled"),
                    (10, "Failed"),
                )
            ],
        )
        insert_rows(conn, "oc_customer", customers)
        insert_rows(conn, "oc_address", addresses)
        insert_rows(
            conn,
            "oc_manufacturer",
            [
                {"manufacturer_id": m, "name": n, "image": None, "sort_order": 0}
                for m, n in ((1, "Whittard"), (2, "Twinings &amp; Co"))
            ],
        )
        insert_rows(conn, "oc_product", products)
        insert_rows(conn, "oc_product_description", descriptions)
        insert_rows(
            conn,
            "oc_category_description",
            [
                {
                    "category_id": 20,
                    "language_id": 1,
                    "name": "Mugs &amp; Cups",
                    "description": "",
                    "meta_title": "",
                    "meta_description": "",
                    "meta_keyword": "",
                }
            ],
        )
        insert_rows(
            conn, "oc_product_to_category", [{"product_id": p, "category_id": 20} for p in range(1, 9)]
        )
        insert_rows(conn, "oc_order", orders)
        insert_rows(conn, "oc_order_product", items)
        insert_rows(conn, "oc_order_history", history)
        insert_rows(conn, "oc_cart", carts)
        insert_rows(conn, "oc_coupon", [coupon])
        for name, value in (
            ("store_url", "https://tea-house.tests.example/"),
            ("birthday_custom_field_id", str(OC_BIRTHDAY_FIELD)),
            ("gender_custom_field_id", str(OC_GENDER_FIELD)),
            ("gender_female_value", str(OC_FEMALE)),
            ("gender_male_value", str(OC_MALE)),
        ):
            conn.execute(
                text("UPDATE shopmail_kit_config SET value = :v WHERE name = :n"), {"v": value, "n": name}
            )


# --- WooCommerce with HPOS ----------------------------------------------------------------------

WC_BIRTHDAY_KEY, WC_GENDER_KEY, WC_CONSENT_KEY = "billing_birth_date", "gender", "marketing_opt_in"
WC_GUEST_ORDER, WC_CUSTOMER_ORDER = 700, 701
WC_BDAY_COUPONS = "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_coupon' AND post_title LIKE 'BDAY-%'"


def fill_woocommerce(engine: Engine) -> None:
    """A small WooCommerce shop as WordPress and WooCommerce (HPOS) write it: users + usermeta +
    wc_customer_lookup (an entity-encoded name), products as posts + wc_product_meta_lookup + terms,
    orders in wc_orders / wc_order_addresses / wc_order_operational_data with *_gmt times, line items
    with _product_id / _qty / _line_total meta, GBP amounts with pence."""
    first = ["Anna", "Tom", "Grace", "Oliver", "Mia", "Jack", "Ella", "Harry", "Lily", "Noah"]
    last = ["Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts", "Walker", "Wright"]
    users, usermeta, lookup = [], [], []
    for i in range(1, 31):
        fn, ln = first[i % 10], last[i % 10]
        users.append(
            {
                "ID": i,
                "user_login": f"customer{i}",
                "user_pass": "$P$x",
                "user_nicename": f"customer{i}",
                "user_email": f"customer{i}@mail.example",
                "user_url": "",
                "user_registered": datetime(2025, 1, 1) + timedelta(days=i * 7),
                "user_activation_key": "",
                "user_status": 0,
                "display_name": f"{fn} {ln}",
            }
        )
        meta = {
            "first_name": fn,
            "last_name": ln,
            "billing_first_name": fn,
            "billing_last_name": ln,
            "billing_city": "London" if i % 2 else "Manchester",
            "wp_capabilities": 'a:1:{s:8:"customer";b:1;}',
            WC_GENDER_KEY: "female" if i % 2 else "male",
            WC_CONSENT_KEY: "no" if i == 2 else "yes",
        }
        if i % 3:
            meta[WC_BIRTHDAY_KEY] = f"{1970 + i}-{(i % 12) + 1:02d}-{(i % 27) + 1:02d}"
        if i == 1:  # the birthday girl, entity-encoded as an import / esc_html'd form left her
            meta.update({WC_BIRTHDAY_KEY: "1990-11-23", "locale": "en_GB", "first_name": "&quot;Shiv&quot;"})
            meta["last_name"] = meta["billing_last_name"] = "O&#039;Brien"
        usermeta += [{"user_id": i, "meta_key": k, "meta_value": v} for k, v in meta.items()]
        lookup.append(
            {
                "user_id": i,
                "username": f"customer{i}",
                "first_name": meta["first_name"],
                "last_name": meta["last_name"],
                "email": f"customer{i}@mail.example",
                "date_registered": users[-1]["user_registered"],
                "country": "GB",
                "postcode": "E1 6AN",
                "city": meta["billing_city"],
                "state": "",
            }
        )

    def post(pid, post_type, title, status="publish", guid="", parent=0, mime=""):
        at = datetime(2025, 1, 1)
        return {
            "ID": pid,
            "post_author": 1,
            "post_date": at,
            "post_date_gmt": at,
            "post_content": "",
            "post_title": title,
            "post_excerpt": "",
            "post_status": status,
            "comment_status": "closed",
            "ping_status": "closed",
            "post_name": f"{post_type}-{pid}",
            "to_ping": "",
            "pinged": "",
            "post_modified": at,
            "post_modified_gmt": at,
            "post_content_filtered": "",
            "post_parent": parent,
            "guid": guid,
            "post_type": post_type,
            "post_mime_type": mime,
        }

    posts, postmeta, product_lookup, prices = [], [], [], {}
    for p in range(101, 109):
        name = "The &quot;Classic&quot; Mug" if p == 101 else f"Tea &amp; Biscuits No {p - 100}"
        posts.append(
            post(p, "product", name, guid=f"https://tea-house.tests.example/?post_type=product&#038;p={p}")
        )
        image = p + 100
        posts.append(
            post(
                image,
                "attachment",
                f"p{p}",
                "inherit",
                f"https://tea-house.tests.example/wp-content/uploads/p{p}.jpg",
                p,
                "image/jpeg",
            )
        )
        prices[p] = "24.99" if p == 101 else f"{10 + p - 100}.50"
        postmeta += [
            {"post_id": p, "meta_key": "_price", "meta_value": prices[p]},
            {"post_id": p, "meta_key": "_regular_price", "meta_value": prices[p]},
            {"post_id": p, "meta_key": "_thumbnail_id", "meta_value": str(image)},
        ]
        product_lookup.append(
            {
                "product_id": p,
                "sku": f"SKU{p}",
                "min_price": prices[p],
                "max_price": prices[p],
                "stock_quantity": 0 if p == 108 else 10 * (p - 100),
                "stock_status": "outofstock" if p == 108 else "instock",
                "total_sales": 0,
            }
        )
    terms = [
        {"term_id": 20, "name": "Mugs &amp; Cups", "slug": "mugs-cups", "term_group": 0},
        {"term_id": 30, "name": "Whittard", "slug": "whittard", "term_group": 0},
        {"term_id": 31, "name": "Twinings &amp; Co", "slug": "twinings", "term_group": 0},
    ]
    taxonomies = [
        {"term_taxonomy_id": t, "term_id": t, "taxonomy": tax, "description": "", "parent": 0, "count": 0}
        for t, tax in ((20, "product_cat"), (30, "product_brand"), (31, "product_brand"))
    ]
    relationships = [{"object_id": p, "term_taxonomy_id": 20, "term_order": 0} for p in range(101, 109)]
    relationships += [
        {"object_id": p, "term_taxonomy_id": 30 + p % 2, "term_order": 0} for p in range(101, 109)
    ]

    orders, addresses, operational, items, itemmeta = [], [], [], [], []

    def order(oid, customer_id, status, created, lines, paid=None, completed=None, updated=None, **billing):
        kind = billing.pop("type", "shop_order")
        total = sum(qty * float(prices[pid]) for pid, qty in lines) + 3.95  # + shipping
        email = billing.get("email") or f"customer{customer_id}@mail.example"
        orders.append(
            {
                "id": oid,
                "status": status,
                "currency": "GBP",
                "type": kind,
                "tax_amount": "0.00000000",
                "total_amount": f"{total:.8f}",
                "customer_id": customer_id,
                "billing_email": email,
                "date_created_gmt": created,
                "date_updated_gmt": updated or completed or paid or created,
                "parent_order_id": billing.pop("parent", 0),
                "payment_method": "stripe",
                "payment_method_title": "Credit card",
                "transaction_id": "",
                "ip_address": "",
                "user_agent": "",
                "customer_note": "",
            }
        )
        for kind_ in ("billing", "shipping"):
            addresses.append(
                {
                    "order_id": oid,
                    "address_type": kind_,
                    "first_name": billing.get("first_name") or first[customer_id % 10],
                    "last_name": billing.get("last_name") or last[customer_id % 10],
                    "company": "",
                    "address_1": "1 High Street",
                    "address_2": "",
                    "city": "Leeds",
                    "state": "",
                    "postcode": "LS1 1AA",
                    "country": "GB",
                    "email": email if kind_ == "billing" else None,
                    "phone": "",
                }
            )
        operational.append(
            {
                "order_id": oid,
                "created_via": "checkout",
                "woocommerce_version": "9.8.1",
                "prices_include_tax": 0,
                "order_key": f"wc_order_{oid}",
                "date_paid_gmt": paid,
                "date_completed_gmt": completed,
                "shipping_total_amount": "3.95000000",
                "discount_total_amount": "0.00000000",
            }
        )
        for pid, qty in lines:
            item_id = len(items) + 1
            items.append(
                {
                    "order_item_id": item_id,
                    "order_item_name": "x",
                    "order_item_type": "line_item",
                    "order_id": oid,
                }
            )
            line = f"{qty * float(prices[pid]):.2f}"
            for key, value in (
                ("_product_id", str(pid)),
                ("_variation_id", "0"),
                ("_qty", str(qty)),
                ("_tax_class", ""),
                ("_line_subtotal", line),
                ("_line_subtotal_tax", "0"),
                ("_line_total", line),
                ("_line_tax", "0"),
            ):
                itemmeta.append({"order_item_id": item_id, "meta_key": key, "meta_value": value})
        items.append(
            {
                "order_item_id": len(items) + 1,
                "order_item_name": "Royal Mail",
                "order_item_type": "shipping",
                "order_id": oid,
            }
        )
        itemmeta.append({"order_item_id": len(items), "meta_key": "cost", "meta_value": "3.95"})

    old = DAY - timedelta(days=40)
    for i in range(3, 25):  # completed history for most customers
        created = old + timedelta(days=i % 9, hours=i)
        order(
            500 + i,
            i,
            "wc-completed",
            created,
            [(101 + i % 7, 1), (102, 2)],
            paid=created + timedelta(hours=1),
            completed=created + timedelta(days=3),
        )
    order(600, 4, "wc-cancelled", old, [(103, 1)], updated=old + timedelta(hours=2))
    order(601, 5, "wc-processing", DAY - timedelta(days=1), [(104, 1)], paid=DAY - timedelta(hours=23))
    order(602, 6, "wc-failed", old, [(105, 1)])  # payment failed: no contract status
    order(603, 7, "wc-checkout-draft", DAY, [(105, 1)])  # block-checkout draft: not an order
    order(604, 9, "wc-on-hold", DAY - timedelta(days=3), [(106, 1)])  # awaiting a bank transfer
    order(605, 5, "wc-completed", DAY - timedelta(days=1), [(104, 1)], type="shop_order_refund", parent=601)
    # a guest order (customer_id 0, only a billing e-mail) and a registered customer's order, both
    # completed today: the order_delivered mail goes to both
    placed = DAY - timedelta(days=2)
    order(
        WC_GUEST_ORDER,
        0,
        "wc-completed",
        placed,
        [(101, 2), (102, 1)],
        paid=placed + timedelta(hours=1),
        completed=DAY + timedelta(hours=10),
        first_name="Se&#039;an",
        last_name="D&#039;Arcy",
        email="guest@mail.example",
    )
    order(
        WC_CUSTOMER_ORDER,
        1,
        "wc-completed",
        placed,
        [(103, 1)],
        paid=placed + timedelta(hours=2),
        completed=DAY + timedelta(hours=11),
    )
    shop_coupon = post(900, "shop_coupon", "spring10")  # the shop's own coupon: not in the contract
    with engine.begin() as conn:
        insert_rows(conn, "wp_users", users)
        insert_rows(conn, "wp_usermeta", usermeta)
        insert_rows(conn, "wp_wc_customer_lookup", lookup)
        insert_rows(conn, "wp_posts", [*posts, shop_coupon])
        insert_rows(conn, "wp_postmeta", postmeta)
        insert_rows(conn, "wp_wc_product_meta_lookup", product_lookup)
        insert_rows(conn, "wp_terms", terms)
        insert_rows(conn, "wp_term_taxonomy", taxonomies)
        insert_rows(conn, "wp_term_relationships", relationships)
        insert_rows(conn, "wp_wc_orders", orders)
        insert_rows(conn, "wp_wc_order_addresses", addresses)
        insert_rows(conn, "wp_wc_order_operational_data", operational)
        insert_rows(conn, "wp_woocommerce_order_items", items)
        insert_rows(conn, "wp_woocommerce_order_itemmeta", itemmeta)
        for name, value in (
            ("store_url", "https://tea-house.tests.example/"),
            ("birthday_meta_key", WC_BIRTHDAY_KEY),
            ("gender_meta_key", WC_GENDER_KEY),
            ("consent_meta_key", WC_CONSENT_KEY),
        ):
            conn.execute(
                text("UPDATE shopmail_kit_config SET value = :v WHERE name = :n"), {"v": value, "n": name}
            )


# --- 1C-Bitrix ------------------------------------------------------------------------------------------

BX_CONSENT_GROUP, BX_BRAND_PROPERTY, BX_SKU_PROPERTY = 3, 10, 20
BX_DISCOUNTS = {"discount_P_15": 7, "discount_P_10": 8}  # the cart rules with coupons a shop creates
BX_SHIPPED_ORDER = 300
BX_MSK = timedelta(hours=3)  # Bitrix writes Moscow time (utc_offset_minutes 180)


def _bx_defaults(table: str) -> dict:
    """Values Bitrix itself writes into NOT NULL columns without a default."""
    return {
        "b_sale_order": {"PERSON_TYPE_ID": 1, "DATE_STATUS": DAY, "PRICE": 0, "CURRENCY": "RUB"},
    }.get(table, {})


def fill_bitrix(engine: Engine) -> None:
    """A small 1C-Bitrix shop as the main, iblock, catalog and sale modules write it: users (a technical
    bot among them) with a subscribers group, a catalog iblock with sections, a list-type brand property, a
    product with offers (SKU) and base plus wholesale prices, orders with the sale module's status log
    (ORDER_STATUS_CHANGED, serialized DATA), payments and shipments (a system one and a real one with a
    tracking number), order properties (city, location), open baskets, and Moscow local times."""
    first = ["Анна", "Иван", "Мария", "Пётр", "Ольга", "Сергей", "Елена", "Дмитрий", "Наталья", "Алексей"]
    last = [
        "Иванова",
        "Петров",
        "Смирнова",
        "Кузнецов",
        "Попова",
        "Волков",
        "Соколова",
        "Лебедев",
        "Козлова",
        "Новиков",
    ]
    users, memberships = [], []
    for i in range(1, 31):
        users.append(
            {
                "ID": i,
                "LOGIN": f"user{i}",
                "PASSWORD": "$6$x",
                "ACTIVE": "Y",
                "NAME": first[i % 10],
                "LAST_NAME": last[i % 10],
                "EMAIL": f"customer{i}@mail.example",
                "DATE_REGISTER": datetime(2025, 1, 1, 12) + timedelta(days=i * 7),
                "LID": "s1",
                "PERSONAL_GENDER": "F" if i % 2 else "M",
                "PERSONAL_BIRTHDAY": date(1970 + i, (i % 12) + 1, (i % 27) + 1) if i % 3 else None,
                "PERSONAL_CITY": "Москва" if i % 4 == 0 else None,
                "BLOCKED": "N",
                "PASSWORD_EXPIRED": "N",
            }
        )
        if i != 2:  # no consent: never a marketing mail
            memberships.append({"USER_ID": i, "GROUP_ID": BX_CONSENT_GROUP})
    users[0].update(NAME="Анна-Мария", LAST_NAME="Д'Арк", PERSONAL_BIRTHDAY=date(1990, 11, 23))
    users.append(  # a chat bot: a user row, not a customer
        {
            "ID": 31,
            "LOGIN": "bot_helper",
            "PASSWORD": "x",
            "ACTIVE": "Y",
            "EMAIL": "bot@mail.example",
            "DATE_REGISTER": datetime(2025, 1, 1),
            "EXTERNAL_AUTH_ID": "bot",
            "BLOCKED": "N",
            "PASSWORD_EXPIRED": "N",
        }
    )
    elements, products, prices, element_props = [], [], [], []
    for p in range(101, 109):
        elements.append(
            {
                "ID": p,
                "IBLOCK_ID": 2,
                "IBLOCK_SECTION_ID": 5,
                "ACTIVE": "Y",
                "NAME": "Чайник «Классика»" if p == 101 else f"Чай & печенье №{p - 100}",
                "CODE": f"p{p}",
                "DATE_CREATE": datetime(2025, 1, 1, 10),
                "TIMESTAMP_X": datetime(2025, 1, 1, 10),
                "DETAIL_PICTURE": 1 if p == 101 else None,
                "PREVIEW_TEXT_TYPE": "text",
                "DETAIL_TEXT_TYPE": "text",
                "IN_SECTIONS": "Y",
            }
        )
        quantity = 0 if p == 108 else 10 * (p - 100)
        products.append({"ID": p, "QUANTITY": quantity, "TYPE": 1, "AVAILABLE": "N" if p == 108 else "Y"})
        base = 1990 if p == 101 else 300 + 10 * p
        prices += [
            {"PRODUCT_ID": p, "CATALOG_GROUP_ID": 1, "PRICE": base, "CURRENCY": "RUB"},
            {"PRODUCT_ID": p, "CATALOG_GROUP_ID": 2, "PRICE": base * 0.8, "CURRENCY": "RUB"},  # wholesale
        ]
        element_props.append(
            {"IBLOCK_PROPERTY_ID": BX_BRAND_PROPERTY, "IBLOCK_ELEMENT_ID": p, "VALUE": str(50 + p % 2),
             "VALUE_ENUM": 50 + p % 2, "VALUE_TYPE": "text"}
        )  # fmt: skip
    # a product with offers (TYPE 3): no price of its own, two offers (TYPE 4) in the offers iblock
    elements.append(
        {"ID": 109, "IBLOCK_ID": 2, "IBLOCK_SECTION_ID": 5, "ACTIVE": "Y", "NAME": "Кружка", "CODE": "mug",
         "DATE_CREATE": datetime(2025, 1, 1, 10), "PREVIEW_TEXT_TYPE": "text", "DETAIL_TEXT_TYPE": "text"}
    )  # fmt: skip
    products.append({"ID": 109, "QUANTITY": 0, "TYPE": 3, "AVAILABLE": "Y"})
    for offer, colour, price in ((201, "красная", 990), (202, "синяя", 1190)):
        elements.append(
            {"ID": offer, "IBLOCK_ID": 3, "ACTIVE": "Y", "NAME": f"Кружка ({colour})", "CODE": None,
             "DATE_CREATE": datetime(2025, 1, 1, 10), "PREVIEW_TEXT_TYPE": "text", "DETAIL_TEXT_TYPE": "text"}
        )  # fmt: skip
        products.append({"ID": offer, "QUANTITY": 5, "TYPE": 4, "AVAILABLE": "Y"})
        prices.append({"PRODUCT_ID": offer, "CATALOG_GROUP_ID": 1, "PRICE": price, "CURRENCY": "RUB"})
        element_props.append(
            {"IBLOCK_PROPERTY_ID": BX_SKU_PROPERTY, "IBLOCK_ELEMENT_ID": offer, "VALUE": "109",
             "VALUE_NUM": 109, "VALUE_TYPE": "text"}
        )  # fmt: skip
    price_of = {row["PRODUCT_ID"]: row["PRICE"] for row in prices if row["CATALOG_GROUP_ID"] == 1}

    orders, baskets, changes, shipments, props = [], [], [], [], []

    def order(oid, user, created, lines, *, status="N", paid=None, shipped=None, done=None, cancelled=None,
              tracking=None, city="Санкт-Петербург"):  # fmt: skip
        total = sum(qty * float(price_of[pid]) for pid, qty in lines)
        moments = [created, paid, shipped, done, cancelled]
        orders.append(
            {
                "ID": oid,
                "LID": "s1",
                "PERSON_TYPE_ID": 1,
                "PAYED": "Y" if paid else "N",
                "DATE_PAYED": paid,
                "CANCELED": "Y" if cancelled else "N",
                "DATE_CANCELED": cancelled,
                "STATUS_ID": status,
                "DATE_STATUS": max(m for m in moments if m is not None),
                "DEDUCTED": "Y" if shipped else "N",
                "DATE_DEDUCTED": shipped,
                "PRICE": f"{total:.4f}",
                "CURRENCY": "RUB",
                "USER_ID": user,
                "DATE_INSERT": created,
                "DATE_UPDATE": max(m for m in moments if m is not None),
                "ACCOUNT_NUMBER": str(oid),
            }
        )
        for pid, qty in lines:
            baskets.append(
                {"FUSER_ID": 1000 + user, "ORDER_ID": oid, "PRODUCT_ID": pid, "PRICE": price_of[pid],
                 "CURRENCY": "RUB", "DATE_INSERT": created, "DATE_UPDATE": created, "QUANTITY": qty,
                 "LID": "s1", "NAME": next(e["NAME"] for e in elements if e["ID"] == pid),
                 "DISCOUNT_PRICE": 0}
            )  # fmt: skip
        steps = [("P", paid), ("F", done)] if status != "N" else []
        for step, at in steps:
            if at is not None:
                data = f'a:1:{{s:9:"STATUS_ID";s:1:"{step}";}}'
                changes.append(
                    {"ORDER_ID": oid, "TYPE": "ORDER_STATUS_CHANGED", "DATA": data, "DATE_CREATE": at,
                     "DATE_MODIFY": at, "USER_ID": 1, "ENTITY": "ORDER", "ENTITY_ID": oid}
                )  # fmt: skip
        base = {"ORDER_ID": oid, "DATE_INSERT": created, "STATUS_ID": "DN", "CURRENCY": "RUB"}
        shipments.append({**base, "DELIVERY_ID": 1, "SYSTEM": "Y", "ACCOUNT_NUMBER": f"{oid}/1"})
        shipments.append(
            {**base, "DELIVERY_ID": 2, "SYSTEM": "N", "ACCOUNT_NUMBER": f"{oid}/2",
             "DELIVERY_NAME": "Почта России",
             "DEDUCTED": "Y" if shipped else "N", "DATE_DEDUCTED": shipped,
             "STATUS_ID": "DF" if shipped else "DN", "TRACKING_NUMBER": tracking}
        )  # fmt: skip
        props.append({"ORDER_ID": oid, "ORDER_PROPS_ID": 6, "NAME": "Город", "VALUE": city, "CODE": "CITY",
                      "ENTITY_ID": oid, "ENTITY_TYPE": "ORDER"})  # fmt: skip

    old = DAY - timedelta(days=40)
    for i in range(3, 25):  # completed history for most customers: N -> P (paid) -> shipped -> F
        created = old + timedelta(days=i % 9, hours=i)
        paid, shipped = created + timedelta(hours=1), created + timedelta(days=1)
        order(100 + i, i, created, [(101 + i % 7, 1), (102, 2)], status="F", paid=paid, shipped=shipped,
              done=created + timedelta(days=3), city="Москва" if i % 4 else "")  # fmt: skip
    order(200, 4, old, [(103, 1)], cancelled=old + timedelta(hours=2))  # cancelled
    order(201, 5, DAY - timedelta(days=1), [(104, 1)], status="P", paid=DAY - timedelta(hours=23))  # paid
    order(202, 6, DAY - timedelta(days=3), [(201, 1), (202, 1)])  # offers of the mug, awaiting payment
    placed = DAY - timedelta(days=2)  # shipped today at 13:00 Moscow time (10:00 UTC), with a tracking number
    order(BX_SHIPPED_ORDER, 1, placed, [(101, 2), (102, 1)], status="P", paid=placed + timedelta(hours=1),
          shipped=DAY + timedelta(hours=13), tracking="RA123456789RU")  # fmt: skip
    carts = [  # open baskets of customers 25..29 from today 13:00 Moscow; an anonymous basket; a delayed item
        {"FUSER_ID": 1000 + c, "ORDER_ID": None, "PRODUCT_ID": 101 + c % 5, "PRICE": price_of[101 + c % 5],
         "CURRENCY": "RUB", "DATE_INSERT": DAY + timedelta(hours=13),
         "DATE_UPDATE": DAY + timedelta(hours=13),
         "QUANTITY": 1, "LID": "s1", "NAME": "x", "DISCOUNT_PRICE": 0, "DELAY": "N", "CAN_BUY": "Y"}
        for c in range(25, 30)
    ] + [
        {"FUSER_ID": 5000, "ORDER_ID": None, "PRODUCT_ID": 102, "PRICE": price_of[102], "CURRENCY": "RUB",
         "DATE_INSERT": DAY, "DATE_UPDATE": DAY, "QUANTITY": 1, "LID": "s1", "NAME": "x",
         "DISCOUNT_PRICE": 0},
        {"FUSER_ID": 1003, "ORDER_ID": None, "PRODUCT_ID": 103, "PRICE": price_of[103], "CURRENCY": "RUB",
         "DATE_INSERT": DAY, "DATE_UPDATE": DAY, "QUANTITY": 1, "LID": "s1", "NAME": "x", "DISCOUNT_PRICE": 0,
         "DELAY": "Y"},
    ]  # fmt: skip
    fusers = [{"ID": 1000 + u, "DATE_INSERT": DAY, "DATE_UPDATE": DAY, "USER_ID": u} for u in range(1, 31)]
    fusers.append({"ID": 5000, "DATE_INSERT": DAY, "DATE_UPDATE": DAY, "USER_ID": None, "CODE": "anon"})
    with engine.begin() as conn:
        insert_rows(conn, "b_lang", [{"LID": "s1", "DEF": "Y", "NAME": "Чайная лавка", "DIR": "/",
                                      "LANGUAGE_ID": "ru", "SERVER_NAME": "tea.example"}])  # fmt: skip
        insert_rows(
            conn,
            "b_group",
            [
                {"ID": g, "NAME": n, "IS_SYSTEM": "Y"}
                for g, n in ((1, "Администраторы"), (2, "Все"), (3, "Подписчики"))
            ],
        )
        insert_rows(conn, "b_user", users)
        insert_rows(conn, "b_user_group", memberships)
        insert_rows(
            conn,
            "b_file",
            [{"ID": 1, "MODULE_ID": "iblock", "SUBDIR": "iblock/a1b", "FILE_NAME": "kettle.jpg"}],
        )
        insert_rows(conn, "b_iblock_type", [{"ID": "catalog"}, {"ID": "offers"}])
        insert_rows(
            conn,
            "b_iblock",
            [
                {"ID": 2, "IBLOCK_TYPE_ID": "catalog", "LID": "s1", "CODE": "clothes", "NAME": "Каталог",
                 "DETAIL_PAGE_URL": "#SITE_DIR#/catalog/#SECTION_CODE#/#ELEMENT_CODE#/"},
                {"ID": 3, "IBLOCK_TYPE_ID": "offers", "LID": "s1", "CODE": "offers", "NAME": "Предложения",
                 "DETAIL_PAGE_URL": ""},
            ],
        )  # fmt: skip
        insert_rows(
            conn,
            "b_iblock_property",
            [
                {"ID": BX_BRAND_PROPERTY, "IBLOCK_ID": 2, "NAME": "Бренд", "CODE": "BRAND",
                 "PROPERTY_TYPE": "L"},
                {"ID": BX_SKU_PROPERTY, "IBLOCK_ID": 3, "NAME": "Элемент каталога", "CODE": "CML2_LINK",
                 "PROPERTY_TYPE": "E", "LINK_IBLOCK_ID": 2},
            ],
        )  # fmt: skip
        insert_rows(
            conn,
            "b_iblock_property_enum",
            [{"ID": 50, "PROPERTY_ID": BX_BRAND_PROPERTY, "VALUE": "Ломоносов", "XML_ID": "lomonosov"},
             {"ID": 51, "PROPERTY_ID": BX_BRAND_PROPERTY, "VALUE": "Гжель & Ко", "XML_ID": "gzhel"}],
        )  # fmt: skip
        insert_rows(conn, "b_iblock_section", [{"ID": 5, "IBLOCK_ID": 2, "NAME": "Посуда", "CODE": "posuda"}])
        insert_rows(conn, "b_iblock_element", elements)
        insert_rows(conn, "b_iblock_element_property", element_props)
        insert_rows(
            conn,
            "b_catalog_iblock",
            [{"IBLOCK_ID": 2, "PRODUCT_IBLOCK_ID": 0, "SKU_PROPERTY_ID": 0},
             {"IBLOCK_ID": 3, "PRODUCT_IBLOCK_ID": 2, "SKU_PROPERTY_ID": BX_SKU_PROPERTY}],
        )  # fmt: skip
        insert_rows(
            conn,
            "b_catalog_group",
            [{"ID": 1, "NAME": "BASE", "BASE": "Y"}, {"ID": 2, "NAME": "OPT", "BASE": "N"}],
        )
        insert_rows(conn, "b_catalog_product", products)
        insert_rows(conn, "b_catalog_price", prices)
        insert_rows(
            conn,
            "b_sale_status",
            [{"ID": s, "TYPE": t, "SORT": n} for s, t, n in (("N", "O", 100), ("P", "O", 200),
                                                            ("F", "O", 300),
                                                            ("DN", "D", 100), ("DF", "D", 300))],
        )  # fmt: skip
        insert_rows(
            conn,
            "b_sale_status_lang",
            [{"STATUS_ID": s, "LID": "ru", "NAME": n} for s, n in (("N", "Принят"), ("P", "Оплачен"),
             ("F", "Выполнен"), ("DN", "Ожидает обработки"), ("DF", "Отгружен"))],
        )  # fmt: skip
        insert_rows(
            conn,
            "b_sale_delivery_srv",
            [{"ID": 1, "NAME": "Без доставки", "ACTIVE": "Y", "SORT": 100,
              "CLASS_NAME": "EmptyDeliveryService",
              "CURRENCY": "RUB"},
             {"ID": 2, "CODE": "pochta", "NAME": "Почта России", "ACTIVE": "Y", "SORT": 200,
              "CLASS_NAME": "Configurable", "CURRENCY": "RUB"}],
        )  # fmt: skip
        insert_rows(
            conn,
            "b_sale_order_props",
            [{"ID": 5, "PERSON_TYPE_ID": 1, "NAME": "Местоположение", "TYPE": "LOCATION", "IS_LOCATION": "Y",
              "PROPS_GROUP_ID": 1, "CODE": "LOCATION", "ENTITY_TYPE": "ORDER"},
             {"ID": 6, "PERSON_TYPE_ID": 1, "NAME": "Город", "TYPE": "STRING", "PROPS_GROUP_ID": 1,
              "CODE": "CITY",
              "ENTITY_TYPE": "ORDER"}],
        )  # fmt: skip
        insert_rows(conn, "b_sale_location", [{"ID": 19, "CODE": "0000073738", "TYPE_ID": 5}])
        insert_rows(conn, "b_sale_loc_name", [{"LANGUAGE_ID": "ru", "LOCATION_ID": 19, "NAME": "Казань",
                                               "NAME_UPPER": "КАЗАНЬ"}])  # fmt: skip
        insert_rows(conn, "b_sale_fuser", fusers)
        insert_rows(conn, "b_sale_order", orders)
        insert_rows(conn, "b_sale_basket", baskets)
        insert_rows(conn, "b_sale_basket", carts)
        insert_rows(conn, "b_sale_order_change", changes)
        insert_rows(conn, "b_sale_order_delivery", shipments)
        insert_rows(conn, "b_sale_order_props_value", [p for p in props if p["VALUE"]])
        insert_rows(  # customer 6's order names a location, not a city
            conn,
            "b_sale_order_props_value",
            [{"ORDER_ID": 202, "ORDER_PROPS_ID": 5, "NAME": "Местоположение", "VALUE": "0000073738",
              "CODE": "LOCATION", "ENTITY_ID": 202, "ENTITY_TYPE": "ORDER"}],
        )  # fmt: skip
        insert_rows(
            conn,
            "b_sale_discount",
            [{"ID": d, "LID": "s1", "NAME": f"Shopmail {n} %", "CURRENCY": "RUB", "DISCOUNT_VALUE": n,
              "DISCOUNT_TYPE": "P", "ACTIVE": "Y", "USE_COUPONS": "Y"} for d, n in ((7, 15), (8, 10))],
        )  # fmt: skip
        settings = {
            "store_url": "https://tea-house.tests.example/",
            "consent_group_id": str(BX_CONSENT_GROUP),
        }
        settings |= {name: str(discount) for name, discount in BX_DISCOUNTS.items()}
        for name, value in settings.items():
            conn.execute(
                text(
                    "INSERT INTO shopmail_kit_config (name, value) VALUES (:n, :v) "
                    "ON DUPLICATE KEY UPDATE value = :v"
                ),
                {"n": name, "v": value},
            )
