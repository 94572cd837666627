"""Personal coupons: codes, expiry, idempotent issuing (SQLite, PostgreSQL, MariaDB) and the
exactly-once guarantee through real Prefect runs of the cancelled-order campaign."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from email import policy
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, insert, select

from config.settings import Settings
from shopmail.campaigns import CouponPolicy, get_campaign
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.mail.rendering import _human_date
from shopmail.mailer.outbox import outbox_file_name
from shopmail.run.pipeline import product_lookup, select_recipients
from shopmail.shop import schema as shop_schema
from shopmail.shop.extract import extract
from shopmail.state import coupons as coupon_module
from shopmail.state import ledger, state_db
from shopmail.state.coupons import (
    ALPHABET,
    CouponConflict,
    coupon_code,
    coupon_for,
    expiry,
    issue_coupons,
    recorded_coupons,
)
from shopmail.state.ledger import LedgerEntry
from shopmail.state.schema import issued_coupons, send_ledger
from tests.test_shop_databases import SERVERS, _scratch_database

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)
POLICY = CouponPolicy(value=15, percent=True, valid_days=7, prefix="BDAY")
CODE_RE = re.compile(rf"^BDAY(-[{ALPHABET}]{{4}}){{3}}$")


# --- codes and expiry (pure) ---------------------------------------------------------------------


def test_code_is_deterministic_per_mail_and_secret_and_well_formed() -> None:
    code = coupon_code("secret", "k1", "BDAY")
    assert code == coupon_code("secret", "k1", "BDAY")
    assert CODE_RE.match(code) and len(code) <= 40
    assert code != coupon_code("secret", "k2", "BDAY")
    assert code != coupon_code("other-secret", "k1", "BDAY")
    assert coupon_code("secret", "k1", "BACK").startswith("BACK-")
    assert coupon_code("secret", "k1", "BACK")[5:] == code[5:]  # the prefix only labels it
    assert len(coupon_code("s", "k", "ABCDEFGH")) <= 40
    many = {coupon_code("secret", f"key-{i}", "BDAY") for i in range(20_000)}
    assert len(many) == 20_000
    assert not set("".join(many)) & set("01OILU")


def test_expiry_is_the_end_of_the_shop_local_day() -> None:
    # 10:00 UTC = 13:00 in Moscow on 23 Nov: 7 days -> through 30 Nov, 23:59:59 Moscow = 20:59:59 UTC
    assert expiry(datetime(2026, 11, 23, 10, 0), 7, MSK) == (
        datetime(2026, 11, 30, 20, 59, 59),
        date(2026, 11, 30),
    )
    # 22:30 UTC on 23 Nov is already 24 Nov in Moscow
    assert expiry(datetime(2026, 11, 23, 22, 30), 7, MSK)[1] == date(2026, 12, 1)


def test_coupon_for_carries_the_policy_terms() -> None:
    coupon = coupon_for(POLICY, "k1", 42, datetime(2026, 11, 23, 10, 0), MSK, "secret")
    assert coupon.code == coupon_code("secret", "k1", "BDAY")
    assert (coupon.customer_id, coupon.value, coupon.percent) == (42, Decimal("15.00"), True)
    assert coupon.expires_on == date(2026, 11, 30) and coupon.discount == "15%"
    money = coupon_for(CouponPolicy(value=500, percent=False), "k1", 42, datetime(2026, 11, 23), MSK, "s")
    assert money.discount == "500" and money.code.startswith("SM-")  # templates format it with `money`
    assert coupon.template_context()["code"] == coupon.code


# --- issuing on every database ---------------------------------------------------------------------


class _Campaign:
    """What `issue_coupons` needs of a campaign."""

    name = "birthday"
    title = "День рождения"
    coupon = POLICY.model_copy(update={"note": "Подарок на день рождения"})


def _shop_with_customers(url: str, count: int) -> Engine:
    engine = get_engine(url)
    shop_schema.metadata.create_all(engine)
    now = datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(
            insert(shop_schema.customers),
            [
                {"id": i, "email": f"c{i}@example.com", "registered_at": now, "marketing_consent": True}
                for i in range(1, count + 1)
            ],
        )
    return engine


@pytest.fixture(params=["sqlite", *SERVERS])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """(shop engine with 1,200 customers, migrated state engine) on SQLite, PostgreSQL or MariaDB."""
    if request.param == "sqlite":
        shop = _shop_with_customers(f"sqlite:///{tmp_path / 'shop.sqlite'}", 1200)
        yield shop, state_db.upgrade(f"sqlite:///{tmp_path / 'state.sqlite'}")
        return
    shop_gen, state_gen = _scratch_database(SERVERS[request.param]), _scratch_database(SERVERS[request.param])
    shop_url, state_url = next(shop_gen), next(state_gen)
    try:
        yield _shop_with_customers(shop_url, 1200), state_db.upgrade(state_url)
    finally:
        for gen in (shop_gen, state_gen):
            next(gen, None)


def _coupons(count: int, issued_at: datetime = datetime(2026, 11, 23, 10, 0)) -> list:
    return [coupon_for(POLICY, f"key-{i}", i, issued_at, MSK, "secret") for i in range(1, count + 1)]


def _shop_rows(shop: Engine) -> list:
    with shop.connect() as conn:
        return conn.execute(select(shop_schema.coupons).order_by(shop_schema.coupons.c.code)).all()


def _issued_rows(state: Engine) -> list:
    with state.connect() as conn:
        return conn.execute(select(issued_coupons).order_by(issued_coupons.c.code)).all()


@pytest.mark.integration
def test_issue_is_idempotent_and_survives_a_crash_between_the_writes(databases) -> None:
    shop, state = databases
    wanted = _coupons(1100)  # more than one chunk
    assert issue_coupons(shop, state, wanted[:1000], _Campaign(), "run-1") == wanted[:1000]
    # rerun (a retry after a crash): overlaps the first call, adds the rest, duplicates nothing
    issue_coupons(shop, state, wanted, _Campaign(), "run-2")
    issue_coupons(shop, state, wanted, _Campaign(), "run-3")

    shop_rows, issued = _shop_rows(shop), _issued_rows(state)
    assert len(shop_rows) == len(issued) == 1100
    by_code = {c.code: c for c in wanted}
    assert {r.code for r in shop_rows} == set(by_code) == {r.code for r in issued}
    row = shop_rows[0]
    coupon = by_code[row.code]
    assert (row.customer_id, row.kind, row.used, bool(row.percent)) == (
        coupon.customer_id,
        "coupon",
        False,
        True,
    )
    assert Decimal(str(row.value)) == Decimal("15.00") and row.expires_at == coupon.expires_at
    assert row.note == "Подарок на день рождения"
    record = next(r for r in issued if r.code == row.code)
    assert (record.message_key, record.campaign, record.run_id) == (coupon.message_key, "birthday", "run-1")
    assert recorded_coupons(state, [coupon.message_key], MSK) == {coupon.message_key: coupon}

    # a crash after the state record, before the shop insert: the next call inserts the shop coupon
    extra = _coupons(1102)[1100:]
    coupon_module._record(state, extra, "birthday", "run-4", datetime(2026, 11, 23, 10, 0))
    assert len(_shop_rows(shop)) == 1100
    issue_coupons(shop, state, extra, _Campaign(), "run-5")
    assert len(_shop_rows(shop)) == len(_issued_rows(state)) == 1102

    # the shop already has the code (restored by hand) but the state DB does not: no error, no duplicate
    lone = _coupons(1103)[1102:]
    with shop.begin() as conn:
        conn.execute(
            insert(shop_schema.coupons),
            [{"code": lone[0].code, "customer_id": 1103, "value": 15, "percent": True, "note": "by hand"}],
        )
    issue_coupons(shop, state, lone, _Campaign(), "run-6")
    assert len(_shop_rows(shop)) == len(_issued_rows(state)) == 1103


@pytest.mark.integration
def test_issue_refuses_conflicts_before_touching_the_shop(databases) -> None:
    shop, state = databases
    first = _coupons(2)
    issue_coupons(shop, state, first, _Campaign(), "run-1")
    # the same mail on other terms (rendered without the recorded coupon): refused, nothing written
    later = _coupons(3, issued_at=datetime(2026, 11, 25, 10, 0))
    with pytest.raises(CouponConflict, match="recorded coupon"):
        issue_coupons(shop, state, later, _Campaign(), "run-2")
    assert len(_shop_rows(shop)) == len(_issued_rows(state)) == 2
    # a code the shop gave to another customer: refused
    clash = coupon_for(POLICY, "key-9", 9, datetime(2026, 11, 23, 10, 0), MSK, "secret")
    with shop.begin() as conn:
        conn.execute(insert(shop_schema.coupons), [{"code": clash.code, "customer_id": 8, "value": 5}])
    with pytest.raises(CouponConflict, match="another customer"):
        issue_coupons(shop, state, [clash], _Campaign(), "run-3")


# --- real Prefect runs -------------------------------------------------------------------------------


@pytest.fixture
def cancelled_shop(settings: Settings) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=3000, seed=21, today=AS_OF)
    return settings


def _ledger(settings: Settings) -> list:
    with state_db.upgrade(settings.state_url_resolved).connect() as conn:
        return conn.execute(select(send_ledger)).all()


def _campaign_coupons(settings: Settings) -> list:
    shop = get_engine(settings.shop_url_resolved)
    with shop.connect() as conn:
        return conn.execute(
            select(shop_schema.coupons).where(shop_schema.coupons.c.code.like("BACK-%"))
        ).all()


def _mail_text(settings: Settings, message_key: str) -> str:
    """Text and HTML parts of the outbox mail of `message_key`, decoded."""
    raw = (settings.outbox_path / outbox_file_name(message_key)).read_bytes()
    mail = BytesParser(policy=policy.default).parsebytes(raw)
    return mail.get_body(("plain",)).get_content() + mail.get_body(("html",)).get_content()


def _outbox(settings: Settings) -> list[Path]:
    return sorted(settings.outbox_path.glob("*.eml")) if settings.outbox_path.exists() else []


def _selection_rows(settings: Settings) -> tuple[list[dict], dict]:
    campaign = get_campaign("order_cancelled")
    frames = extract(
        get_engine(settings.shop_url_resolved), campaign.datasets, AS_OF, settings.tz, campaign.history_days
    )
    state = state_db.upgrade(settings.state_url_resolved)
    selection = select_recipients(campaign, frames, AS_OF, settings, state, set())
    return selection.eligible.to_dict("records"), product_lookup(frames["products"])


@pytest.mark.flow
def test_each_mail_carries_one_issued_coupon_exactly_once(prefect_harness, cancelled_shop: Settings) -> None:
    from flows.campaign import campaign_flow

    settings = cancelled_shop
    secret = settings.coupon_secret.get_secret_value()

    dry = campaign_flow(campaign="order_cancelled", as_of=AS_OF, dry_run=True)
    assert dry.eligible >= 2, "the demo shop must give the cancelled-order campaign an audience"
    assert _campaign_coupons(settings) == [] and _ledger(settings) == []
    with state_db.upgrade(settings.state_url_resolved).connect() as conn:
        assert conn.execute(select(func.count()).select_from(issued_coupons)).scalar_one() == 0
    sample_code = coupon_code(secret, dry.sample.message_key, "BACK")
    assert sample_code in dry.sample.text  # the dry run shows the very code the customer will get

    report = campaign_flow(campaign="order_cancelled", as_of=AS_OF)
    assert report.counts()["sent"] == dry.eligible
    mailed = _ledger(settings)
    assert {r.status for r in mailed} == {"sent"} and len(mailed) == dry.eligible
    shop_coupons = _campaign_coupons(settings)
    assert sorted(c.customer_id for c in shop_coupons) == sorted(r.customer_id for r in mailed)
    by_customer = {c.customer_id: c for c in shop_coupons}
    with state_db.upgrade(settings.state_url_resolved).connect() as conn:
        issued = {r.message_key: r for r in conn.execute(select(issued_coupons))}
    assert set(issued) == {r.message_key for r in mailed}
    today = datetime.now(settings.tz).date()
    for row in mailed:
        coupon = by_customer[row.customer_id]
        assert coupon.code == coupon_code(secret, row.message_key, "BACK") == issued[row.message_key].code
        assert (coupon.kind, coupon.used, bool(coupon.percent), float(coupon.value)) == (
            "coupon",
            False,
            True,
            10,
        )
        assert coupon.note == "Скидка на возвращение"
        expires_on = coupon.expires_at.replace(tzinfo=ZoneInfo("UTC")).astimezone(settings.tz).date()
        assert expires_on == today + timedelta(days=14)
        text = _mail_text(settings, row.message_key)
        assert coupon.code in text
        assert _human_date(expires_on, "ru") in text or _human_date(expires_on, "en") in text
    assert sample_code in {c.code for c in shop_coupons}

    again = campaign_flow(campaign="order_cancelled", as_of=AS_OF).counts()
    assert again["sent"] == 0
    assert len(_campaign_coupons(settings)) == len(mailed) == len(_outbox(settings))
    with state_db.upgrade(settings.state_url_resolved).connect() as conn:
        assert conn.execute(select(func.count()).select_from(issued_coupons)).scalar_one() == len(mailed)


@pytest.mark.flow
def test_a_coupon_failure_sends_nothing_and_the_rerun_sends_once(
    prefect_harness, cancelled_shop: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    import tasks.send
    from flows.campaign import campaign_flow
    from tasks.send import CouponIssueFailed, send_batch

    settings = cancelled_shop
    rows, products = _selection_rows(settings)
    assert len(rows) >= 2

    def refuse(*_args, **_kwargs):
        raise PermissionError("INSERT command denied to user 'shopmail' for table 'coupons'")

    monkeypatch.setattr(tasks.send, "issue_coupons", refuse)

    @flow
    def one_batch() -> object:
        return send_batch.with_options(retries=0)(get_campaign("order_cancelled"), rows, products, "run-x")

    with pytest.raises(CouponIssueFailed, match="INSERT command denied"):
        one_batch()
    assert _outbox(settings) == [] and _campaign_coupons(settings) == []
    failed = _ledger(settings)
    assert len(failed) == len(rows)
    assert {r.status for r in failed} == {"failed"}
    assert all(r.error.startswith("coupon not issued") for r in failed)

    monkeypatch.undo()
    report = campaign_flow(campaign="order_cancelled", as_of=AS_OF)
    assert report.counts()["sent"] == len(rows)
    assert {r.status for r in _ledger(settings)} == {"sent"}
    assert len(_outbox(settings)) == len(_campaign_coupons(settings)) == len(rows)
    for row in rows:
        assert coupon_code(
            settings.coupon_secret.get_secret_value(), row["message_key"], "BACK"
        ) in _mail_text(settings, row["message_key"])


@pytest.mark.flow
def test_a_coupon_issued_before_a_crash_is_mailed_as_recorded(
    prefect_harness, cancelled_shop: Settings
) -> None:
    """The first attempt claimed the mails and issued their coupons three days ago, then died before
    the provider call: the rerun sends each mail once, with the recorded code and expiry."""
    from flows.campaign import campaign_flow

    settings = cancelled_shop
    campaign = get_campaign("order_cancelled")
    rows, _ = _selection_rows(settings)
    state = state_db.upgrade(settings.state_url_resolved)
    shop = get_engine(settings.shop_url_resolved)
    earlier = datetime.now(ZoneInfo("UTC")).replace(tzinfo=None, microsecond=0) - timedelta(days=3)
    secret = settings.coupon_secret.get_secret_value()
    crashed = [
        coupon_for(campaign.coupon, r["message_key"], r["customer_id"], earlier, settings.tz, secret)
        for r in rows
    ]
    issue_coupons(shop, state, crashed, campaign, "crashed-run")
    ledger.claim(
        state,
        [LedgerEntry(campaign.name, r["occasion_key"], r["customer_id"]) for r in rows],
        "crashed-run",
        "outbox",
        now=earlier,  # the crashed run's lease ran out long ago
    )

    report = campaign_flow(campaign="order_cancelled", as_of=AS_OF)
    assert report.counts()["sent"] == len(rows)
    for coupon in crashed:
        text = _mail_text(settings, coupon.message_key)
        assert coupon.code in text
        assert _human_date(coupon.expires_on, "ru") in text or _human_date(coupon.expires_on, "en") in text
    stored = _campaign_coupons(settings)
    assert len(stored) == len(rows)
    assert {c.code: c.expires_at for c in stored} == {c.code: c.expires_at for c in crashed}
