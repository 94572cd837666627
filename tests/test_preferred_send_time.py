"""Send time: each customer's preferred hour from their orders (and clicks), smoothed toward the shop's
hour, delivered through SendGrid's `send_at` at that hour in their own zone (also across a DST change),
never in the quiet hours, never more than 72 hours ahead; the fallback without history; the local
SendGrid server refusing what SendGrid refuses."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import pytest

from config.quiet_hours import QuietHours
from segments.preferred_hour import local_hours, preferred_hours, preferred_send_at
from shopmail.campaigns import Campaign, get_campaign

QUIET = QuietHours.parse("23-8")


def _orders_at_local(customer: int, zone: str, days: list[str], hour: int, minute: int = 5) -> list[dict]:
    """Orders of `customer` at `hour`:`minute` local time on `days`, as naive UTC (the contract's)."""
    tz = ZoneInfo(zone)
    out = []
    for day in days:
        local = datetime.fromisoformat(f"{day}T{hour:02d}:{minute:02d}").replace(tzinfo=tz)
        out.append({"customer_id": customer, "at": local.astimezone(UTC).replace(tzinfo=None)})
    return out


def _local(stamp: int, zone: str) -> datetime:
    return datetime.fromtimestamp(stamp, ZoneInfo(zone))


def test_orders_at_21_local_give_send_at_21_in_their_zone_across_dst() -> None:
    summer_and_winter = ["2026-06-02", "2026-07-14", "2026-09-20", "2026-11-03", "2026-12-01", "2027-01-15"]
    moments = pd.DataFrame(
        _orders_at_local(1, "Europe/Berlin", summer_and_winter, 21)
        + _orders_at_local(2, "Asia/Vladivostok", summer_and_winter, 21)
        + _orders_at_local(3, "America/New_York", summer_and_winter, 20, 55)
    )
    ids = pd.Series([1, 2, 3])
    zones = pd.Series(["Europe/Berlin", "Asia/Vladivostok", "America/New_York"])
    hours = preferred_hours(moments, ids, zones)
    assert hours.tolist() == [21, 21, 21]  # 19:05 UTC in summer, 20:05 in winter: 21 local both times

    # the day Berlin leaves summer time (25 Oct 2026) and the day New York starts it (8 Mar 2026)
    for zone, now in (
        ("Europe/Berlin", datetime(2026, 10, 24, 8, 0)),  # Saturday, CEST
        ("Europe/Berlin", datetime(2026, 10, 25, 8, 0)),  # Sunday, CET since 03:00
        ("America/New_York", datetime(2026, 3, 7, 15, 0)),  # Saturday, EST
        ("America/New_York", datetime(2026, 3, 8, 15, 0)),  # Sunday, EDT since 02:00
        ("Asia/Vladivostok", datetime(2026, 10, 25, 1, 0)),  # no DST
    ):
        stamp = preferred_send_at(zone, 21, now, QUIET)
        assert stamp is not None
        local = _local(stamp, zone)
        assert (local.hour, local.minute) == (21, 0) and local.date() == now.replace(tzinfo=UTC).astimezone(
            ZoneInfo(zone)
        ).date()
    berlin = [
        preferred_send_at("Europe/Berlin", 21, d, QUIET)
        for d in (datetime(2026, 10, 24, 8), datetime(2026, 10, 25, 8))
    ]
    assert [datetime.fromtimestamp(s, UTC).hour for s in berlin] == [
        19,
        20,
    ]  # the UTC moment moved, not the hour


def test_never_in_quiet_hours_never_beyond_72_hours() -> None:
    rng = random.Random(5)
    quiet = QuietHours.parse("21-9")
    zones = [
        "Europe/Kaliningrad",
        "Europe/Moscow",
        "Asia/Yekaterinburg",
        "Asia/Kamchatka",
        "America/New_York",
    ]
    for _ in range(2000):
        zone, hour = rng.choice(zones), rng.randrange(24)
        now = datetime(2026, 1, 1) + timedelta(minutes=rng.randrange(60 * 24 * 365))
        stamp = preferred_send_at(zone, hour, now, quiet)
        if stamp is None:
            continue
        local = _local(stamp, zone)
        assert not quiet.contains(local.timetz()), (zone, hour, now, local)
        assert (
            now.replace(tzinfo=UTC)
            < datetime.fromtimestamp(stamp, UTC)
            <= now.replace(tzinfo=UTC) + timedelta(hours=72)
        )
        assert local.hour == (hour if not quiet.contains(datetime(2026, 1, 1, hour).time()) else 9)


def test_fallback_and_smoothing_toward_the_shop_hour() -> None:
    many = [
        o
        for c in range(10, 30)
        for o in _orders_at_local(c, "Europe/Moscow", ["2026-10-01", "2026-10-02"], 14)
    ]
    one_morning_order = _orders_at_local(1, "Europe/Moscow", ["2026-10-05"], 10)
    regular = _orders_at_local(2, "Europe/Moscow", [f"2026-10-{d:02d}" for d in range(1, 21)], 2)
    moments = pd.DataFrame(many + one_morning_order + regular)
    ids = pd.Series([0, 1, 2, 10])  # the recipients; everyone's orders make the shop's hour
    hours = preferred_hours(moments, ids, pd.Series(["Europe/Moscow"] * 4), default_zone="Europe/Moscow")
    assert hours[0] == 14  # no history: the shop's hour
    assert 10 < hours[1] < 14  # one order at 10:00: pulled most of the way toward the shop's 14:00
    assert hours[2] in (2, 3)  # twenty orders at 02:00: their own hour
    assert hours[3] == 14
    # no data at all: the default hour
    assert preferred_hours(
        pd.DataFrame(columns=["customer_id", "at"]), pd.Series([5]), pd.Series(["UTC"])
    ).tolist() == [10]
    # the circular mean: 23:00 and 01:00 average to midnight, not noon
    assert local_hours(
        pd.Series([datetime(2026, 1, 1, 23), datetime(2026, 1, 2, 1)]), pd.Series(["UTC", "UTC"])
    ).tolist() == [23, 1]
    late = pd.DataFrame(
        {"customer_id": [7] * 20, "at": [datetime(2026, 1, d, 23 if d % 2 else 1) for d in range(1, 21)]}
    )
    assert preferred_hours(late, pd.Series([7]), pd.Series(["UTC"])).tolist() == [0]


def test_the_campaign_switch_is_for_marketing_mail_only() -> None:
    welcome = get_campaign("welcome").model_dump()
    with pytest.raises(ValueError, match="send_time = preferred is for marketing mail"):
        Campaign(**{**welcome, "send_time": "preferred"})
    cart = Campaign(**{**get_campaign("abandoned_cart").model_dump(), "send_time": "preferred"})
    assert cart.send_time == "preferred" and cart.send_time_fixed_percent == 50


def test_the_local_sendgrid_server_checks_send_at_like_sendgrid() -> None:
    from shopmail.devtools.sendgrid_sink import running_sink

    now = int(datetime.now(UTC).timestamp())
    body = {
        "from": {"email": "news@mailings.test"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "x"}],
    }
    with running_sink() as sink:

        def post(send_at: object) -> int:
            payload = {**body, "personalizations": [{"to": [{"email": "a@example.com"}], "send_at": send_at}]}
            return httpx.post(
                f"{sink.url}/v3/mail/send", json=payload, headers={"Authorization": "Bearer SG.x"}
            ).status_code

        assert post(now + 3600) == 202
        assert post(now + 71 * 3600) == 202
        assert post(now + 73 * 3600) == 400  # more than 72 hours ahead
        assert post(str(now + 3600)) == 400  # not an integer
        assert post(now + 3600.5) == 400


def test_a_run_schedules_each_mail_at_its_customers_hour(settings, monkeypatch) -> None:
    """The selection and the composer of a real run (SQLite shop and state DB): customers whose orders
    cluster at 21:00 in Yekaterinburg get send_at 21:00 there; one without orders gets the shop's hour;
    the fixed-hour group gets none (outside the quiet hours)."""
    from config.settings import get_settings

    monkeypatch.setenv("SHOPMAIL_QUIET_HOURS", "23-8")
    get_settings.cache_clear()
    settings = get_settings()
    from sqlalchemy import delete, insert, select, update

    from shopmail.db import get_engine
    from shopmail.devtools.demo_shop import generate_demo_shop
    from shopmail.run.composer import MailComposer
    from shopmail.run.pipeline import product_lookup, select_recipients
    from shopmail.shop import schema
    from shopmail.shop.extract import extract
    from shopmail.state import state_db

    day = datetime(2026, 11, 20)
    generate_demo_shop(
        settings.shop_url_resolved, customers=300, seed=11, today=(day - timedelta(days=1)).date()
    )
    shop = get_engine(settings.shop_url_resolved)
    spec = Campaign(
        **{**get_campaign("abandoned_cart").model_dump(), "send_time": "preferred", "holdout_percent": 0}
    )
    with shop.begin() as conn:
        ids = (
            conn.execute(
                select(schema.customers.c.id).where(
                    schema.customers.c.marketing_consent.is_(True), schema.customers.c.email.like("%@%.%")
                )
            )
            .scalars()
            .all()[:40]
        )
        conn.execute(delete(schema.cart_items))
        conn.execute(delete(schema.carts))
        conn.execute(delete(schema.order_status_history))
        conn.execute(delete(schema.order_items))
        conn.execute(delete(schema.orders))
        product = (
            conn.execute(select(schema.products.c.id).where(schema.products.c.in_stock.is_(True)))
            .scalars()
            .first()
        )
        for n, cid in enumerate(ids):
            conn.execute(
                update(schema.customers).where(schema.customers.c.id == cid).values(city="Екатеринбург")
            )
            conn.execute(
                insert(schema.carts).values(id=7000 + n, customer_id=cid, updated_at=day + timedelta(hours=1))
            )
            conn.execute(insert(schema.cart_items).values(cart_id=7000 + n, product_id=product, qty=1))
            if n:  # the first customer has no orders: the shop's hour
                for k, row in enumerate(
                    _orders_at_local(
                        cid, "Asia/Yekaterinburg", ["2026-11-14", "2026-11-16", "2026-11-18"], 21
                    )
                ):
                    conn.execute(insert(schema.orders).values(
                        id=100000 + n * 10 + k, customer_id=cid, status="delivered", created_at=row["at"],
                        total=10, currency="RUB",
                    ))  # fmt: skip
    state = state_db.upgrade(settings.state_url_resolved)
    frames = extract(shop, spec.datasets, day.date(), settings.tz, spec.history_days)
    selection = select_recipients(
        spec, frames, day.date(), settings, state, set(), window=(day, day + timedelta(hours=3))
    )
    rows = selection.eligible
    assert set(rows["test_variant"]) == {"fixed hour", "preferred hour"} and len(rows) == len(ids)
    composer = MailComposer(spec, settings, product_lookup(frames["products"]))
    now = datetime(2026, 11, 20, 6, 0)  # 11:00 in Yekaterinburg
    no_history = rows.loc[rows["customer_id"] == ids[0]].iloc[0]
    assert (no_history["test_variant"], no_history["send_hour"]) == ("preferred hour", 21)
    for row in rows.to_dict("records"):
        stamp = composer.scheduled(row["local_tz"], now, row["send_hour"])
        if row["test_variant"] == "fixed hour":
            assert stamp is None  # sent when the run sends it (11:00 local is outside the quiet hours)
            continue
        local = _local(stamp, "Asia/Yekaterinburg")
        assert row["local_tz"] == "Asia/Yekaterinburg"
        assert (local.day, local.hour, local.minute) == (20, 21, 0), row[
            "customer_id"
        ]  # today 21:00 there (also the no-history
        # customer: the shop's hour, which its customers' orders make 21:00)
