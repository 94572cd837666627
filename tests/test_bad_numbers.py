"""Numbers like dates, currencies, text lengths (issue 29): a price of '12,50 руб.' crashed the run
("TypeError: must be real number, not str"); '6 790 ZZZ' and a bare '5 268' reached customers; a
5,000-character first name made a 5,035-character subject."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import text

from config.settings import Settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.errors import explain
from shopmail.shop.data_checks import ShopRules, run_gate
from shopmail.shop.extract import NOT_NUMBERS, TEXT_LIMITED, day_end_utc, extract, parse_numbers
from tests.test_bad_data import _quarantined
from tests.test_shop_databases import SERVERS, _scratch_database

AS_OF = date(2026, 11, 23)
MSK = ZoneInfo("Europe/Moscow")
DATASETS = ["customers", "orders", "order_items", "products"]


def test_numbers_are_read_as_people_write_them_and_the_rest_flagged() -> None:
    raw = pd.Series(
        [
            "1290.50",
            " 12.5 ",
            "1 234,50",
            "1\u00a0234\u00a0567",
            "12,5",
            7,
            2.25,
            None,
            "12,50 руб.",
            "1,234",
            "n/a",
            "inf",
        ],
        dtype=object,
    )
    numbers, bad = parse_numbers(raw, "price")
    assert numbers.head(7).tolist() == [1290.5, 12.5, 1234.5, 1234567.0, 12.5, 7.0, 2.25]
    assert bad.tolist() == [False] * 8 + [True] * 4 and numbers.tail(5).isna().all()
    quantities, bad_qty = parse_numbers(pd.Series([1, "2", "2.5", None], dtype=object), "qty")
    assert bad_qty.tolist() == [False, False, True, False] and quantities.tolist()[:2] == [1.0, 2.0]
    whole, _ = parse_numbers(pd.Series([1, 2, 3]), "qty")
    assert str(whole.dtype) == "int64"


def _new_arrivals(conn, count: int = 5) -> list[int]:
    """Make `count` in-stock products the week's new arrivals (newest first); their ids."""
    ids = (
        conn.execute(text(f"SELECT id FROM products WHERE in_stock ORDER BY id LIMIT {count}"))
        .scalars()
        .all()
    )
    for hours, pid in enumerate(ids):
        added = datetime(2026, 11, 22, 12) - timedelta(hours=hours)
        conn.execute(text("UPDATE products SET created_at = :t WHERE id = :i"), {"t": added, "i": pid})
    return list(ids)


def _mailable(conn, campaign: str, count: int) -> list[int]:
    """Customers with marketing consent outside the campaign's holdout."""
    from segments.holdout import in_holdout
    from shopmail.campaigns import get_campaign

    ids = (
        conn.execute(text("SELECT id FROM customers WHERE marketing_consent ORDER BY id LIMIT 60"))
        .scalars()
        .all()
    )
    held = in_holdout(campaign, list(ids), get_campaign(campaign).holdout_percent)
    return [i for i, h in zip(ids, held, strict=True) if not h][:count]


def _mails(settings: Settings) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(settings.outbox_path.glob("*.eml"))
    ]


def _body(mail: email.message.EmailMessage) -> str:
    return "".join(p.get_content() for p in mail.walk() if p.get_content_type().startswith("text/"))


@pytest.mark.flow
def test_a_price_written_as_text_is_set_aside_with_table_column_and_example_not_a_crash(
    prefect_harness, settings: Settings
) -> None:
    """SQLite stores '12,50 руб.' in a NUMERIC column; the run used to die on it. Now that product is set
    aside (named with an example), a price written '1 234,50' is read, and the mails go."""
    from flows.campaign import campaign_flow

    generate_demo_shop(settings.shop_url_resolved, customers=500, seed=7, today=AS_OF)
    shop = get_engine(settings.shop_url_resolved)
    with shop.begin() as conn:
        text_price, spaced_price, *_ = _new_arrivals(conn)
        conn.execute(text("UPDATE products SET price = '12,50 руб.' WHERE id = :i"), {"i": text_price})
        conn.execute(text("UPDATE products SET price = '1 234,50' WHERE id = :i"), {"i": spaced_price})
        bad_name = conn.execute(text("SELECT name FROM products WHERE id = :i"), {"i": text_price}).scalar()
        conn.execute(
            text(
                "UPDATE order_items SET price = 'бесплатно' "
                "WHERE rowid = (SELECT max(rowid) FROM order_items)"
            )
        )
    report = campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
    mails = _mails(settings)
    assert report.counts()["sent"] == len(mails) > 100
    body = _body(mails[0])
    assert "1\u00a0234,50\u00a0₽" in body and bad_name not in body
    assert "| products | price | must be a number | row set aside, never mailed | " in report.checks_markdown
    stored = _quarantined(settings, "products")
    assert stored == {str(text_price): "price:parsable_number"}
    frames = extract(shop, DATASETS, AS_OF, MSK, 365)
    gate = run_gate(frames, AS_OF, day_end_utc(AS_OF, MSK))
    said = gate.failure_text() + " ".join(r.message for r in gate.results)
    assert "products.price: 1 of 200 rows are not a number, e.g. '12,50 руб.'" in said
    assert "order_items.price: 1 of" in said and "'бесплатно'" in said


@pytest.fixture(params=list(SERVERS))
def server_shop_with_text_prices(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    """A demo shop on PostgreSQL / MariaDB whose view of products gives prices as text (as a platform
    storing prices in a text field does: WooCommerce's `_price` meta)."""
    gen = _scratch_database(SERVERS[request.param])
    url = next(gen)
    generate_demo_shop(url, customers=300, seed=5, today=AS_OF)
    with get_engine(url).begin() as conn:
        if request.param == "postgresql":
            conn.execute(text("ALTER TABLE products ALTER COLUMN price TYPE varchar(40) USING price::text"))
            conn.execute(text("ALTER TABLE orders ALTER COLUMN total TYPE varchar(40) USING total::text"))
        else:
            conn.execute(text("ALTER TABLE products MODIFY price VARCHAR(40) NOT NULL"))
            conn.execute(text("ALTER TABLE orders MODIFY total VARCHAR(40) NOT NULL"))
        conn.execute(text("UPDATE products SET price = '12,50 руб.' WHERE id = 3"))
        conn.execute(text("UPDATE products SET price = '1 234,50' WHERE id = 4"))
        conn.execute(
            text("UPDATE orders SET total = 'n/a' WHERE id = (SELECT min(order_id) FROM order_items)")
        )
    try:
        yield url
    finally:
        next(gen, None)


@pytest.mark.integration
def test_text_prices_on_postgresql_and_mariadb_are_read_the_same_way(
    server_shop_with_text_prices: str, settings: Settings
) -> None:
    engine = get_engine(server_shop_with_text_prices)
    frames = extract(engine, DATASETS, AS_OF, MSK, 365)
    products = frames["products"].set_index("id")
    assert str(products["price"].dtype) == "float64" and products.loc[4, "price"] == 1234.5
    assert pd.isna(products.loc[3, "price"]) and frames["products"].attrs[NOT_NUMBERS]["price"]
    gate = run_gate(frames, AS_OF, day_end_utc(AS_OF, MSK))
    assert gate.success, gate.failure_text()
    assert 3 in gate.quarantined_keys("products") and len(gate.quarantined_keys("orders")) == 1
    messages = " ".join(r.message for r in gate.results if r.check == "parsable_number")
    assert "products.price: 1 of" in messages and "e.g. '12,50 руб.'" in messages
    assert "orders.total: 1 of" in messages and "e.g. 'n/a'" in messages


def _received_today(conn) -> list[tuple[int, int]]:
    """(order id, customer id) of orders received on the run day and still only received."""
    start = datetime(2026, 11, 22, 21)  # 00:00 Moscow time in UTC
    return [
        tuple(r)
        for r in conn.execute(
            text(
                "SELECT id, customer_id FROM orders WHERE status = 'received' AND created_at >= :s "
                "AND created_at < :e ORDER BY id"
            ),
            {"s": start, "e": start + timedelta(days=1)},
        )
    ]


def test_order_currencies_are_iso_and_the_shops_a_blank_one_is_the_shop_currency(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shopmail.run.preview import preview_mail

    generate_demo_shop(settings.shop_url_resolved, customers=3000, seed=7, today=AS_OF)
    shop = get_engine(settings.shop_url_resolved)
    with shop.begin() as conn:
        orders = _received_today(conn)
        assert len(orders) >= 3
        (blank, blank_customer), (zzz, zzz_customer), (usd, usd_customer) = orders[:3]
        conn.execute(text("UPDATE orders SET currency = ' ' WHERE id = :i"), {"i": blank})
        conn.execute(text("UPDATE orders SET currency = 'ZZZ' WHERE id = :i"), {"i": zzz})
        conn.execute(text("UPDATE orders SET currency = 'usd' WHERE id = :i"), {"i": usd})
    shown = preview_mail("order_received", blank_customer, AS_OF).mail
    assert shown is not None and "\u00a0₽" in shown.text  # the shop's currency, not a bare amount
    refused = preview_mail("order_received", zzz_customer, AS_OF)
    assert refused.mail is None or "ZZZ" not in refused.mail.text
    frames = extract(shop, ["customers", "orders"], AS_OF, MSK, 30)
    gate = run_gate(frames, AS_OF, rules=ShopRules(currencies=("RUB",)))
    assert {zzz, usd} <= gate.quarantined_keys("orders") and blank not in gate.quarantined_keys("orders")
    reasons = {key: labels for key, labels in gate.quarantine["orders"].items()}
    assert reasons[zzz] == ["currency:currency_known ('ZZZ' is not an ISO 4217 currency)"]
    assert reasons[usd] == ["currency:currency_known ('USD' is not one of the shop's currencies)"]
    message = next(r.message for r in gate.results if r.check == "currency_known")
    assert "found 'USD' (1), 'ZZZ' (1)" in message or "found 'ZZZ' (1), 'USD' (1)" in message
    allowed = run_gate(frames, AS_OF, rules=ShopRules(currencies=("RUB", "USD")))
    assert usd not in allowed.quarantined_keys("orders") and zzz in allowed.quarantined_keys("orders")
    monkeypatch.setenv("SHOPMAIL_ORDER_CURRENCIES", "usd, eur")
    from config.settings import get_settings

    get_settings.cache_clear()
    assert ShopRules.from_settings(get_settings()).currencies == ("RUB", "USD", "EUR")
    usd_mail = preview_mail("order_received", usd_customer, AS_OF).mail
    assert usd_mail is not None and "$" in usd_mail.text
    monkeypatch.setenv("SHOPMAIL_CURRENCY", "RUR")  # historic ISO 4217: accepted; a made-up code is not
    monkeypatch.setenv("SHOPMAIL_ORDER_CURRENCIES", "QQQ")
    get_settings.cache_clear()
    with pytest.raises(ValueError) as caught:
        ShopRules.from_settings(get_settings())
    said = explain(caught.value).message
    assert said == (
        "Configuration error: SHOPMAIL_ORDER_CURRENCIES: 'QQQ' is not an ISO 4217 currency. "
        "Fix it in the environment or in .env and run again."
    )


@pytest.mark.flow
def test_a_5000_character_name_is_cut_by_the_contract_and_counted(
    prefect_harness, settings: Settings
) -> None:
    from flows.campaign import campaign_flow

    generate_demo_shop(settings.shop_url_resolved, customers=500, seed=7, today=AS_OF)
    shop = get_engine(settings.shop_url_resolved)
    with shop.begin() as conn:
        long_product = _new_arrivals(conn)[0]
        long_name, long_last = _mailable(conn, "new_arrivals", 2)
        conn.execute(
            text("UPDATE customers SET first_name = :n WHERE id = :i"), {"n": "Я" * 5000, "i": long_name}
        )
        conn.execute(
            text("UPDATE customers SET last_name = :n WHERE id = :i"), {"n": "Б" * 5001, "i": long_last}
        )
        conn.execute(text("UPDATE products SET name = :n WHERE id = :i"), {"n": "Ж" * 300, "i": long_product})
    report = campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
    mails = _mails(settings)
    assert report.counts()["sent"] == len(mails) > 100
    assert max(len(m["Subject"]) for m in mails) < 150
    assert max(len(str(m["To"])) for m in mails) < 300
    mailed = {m["X-Shopmail-customer_id"] for m in mails}
    assert {str(long_name), str(long_last)} <= mailed  # still mailed, greeted without the "name"
    assert not any("ЯЯЯЯ" in _body(m) or "ББББ" in str(m["To"]) for m in mails)
    assert "Ж" * 199 + "\u2026" in _body(mails[0]) and "Ж" * 200 not in _body(
        mails[0]
    )  # cut to the 200 allowed
    rows = {
        line.split("|")[2].strip(): line
        for line in report.checks_markdown.splitlines()
        if "text must fit its column" in line
    }
    assert (
        "| 1 | ok |" in rows["first_name"]
        and "| 1 | ok |" in rows["last_name"]
        and "| 1 | ok |" in rows["name"]
    )
    frames = extract(shop, ["customers", "products"], AS_OF, MSK, 30)
    assert frames["customers"].attrs[TEXT_LIMITED] == {
        "first_name": (1, 100, "blank"),
        "last_name": (1, 100, "blank"),
    }
