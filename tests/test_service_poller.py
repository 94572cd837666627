"""The service poller under a real Prefect run: events since the watermark are mailed within one
poll, each exactly once; a failed send keeps the watermark so the next poll retries it."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from config.settings import Settings, get_settings
from shopmail.db import get_engine
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.shop import schema as s
from shopmail.state import state_db
from shopmail.state.schema import send_ledger

pytestmark = pytest.mark.flow


def _now() -> datetime:
    return state_db.utcnow()


@pytest.fixture
def live_shop(settings: Settings) -> Settings:
    """A tiny shop whose events happen 'now' (the poller reads up to the real clock)."""
    engine = get_engine(settings.shop_url_resolved)
    s.metadata.drop_all(engine)
    s.metadata.create_all(engine)
    now = _now()
    with engine.begin() as conn:
        conn.execute(
            insert(s.products),
            [
                {
                    "id": i,
                    "name": f"Товар {i}",
                    "brand": "B",
                    "category": "Кухня",
                    "price": 100 * i,
                    "url": f"https://shop.example/p/{i}",
                    "in_stock": True,
                    "overstock": False,
                    "created_at": now - timedelta(days=100),
                }
                for i in range(1, 9)
            ],
        )
        conn.execute(
            insert(s.customers),
            [
                {
                    "id": i,
                    "email": f"c{i}@mail.example",
                    "first_name": f"Имя{i}",
                    "last_name": "Тест",
                    "gender": "f",
                    "city": "Москва",
                    "language": "ru",
                    "marketing_consent": False,
                    "registered_at": now - timedelta(days=30),
                }
                for i in (1, 2, 3)
            ]
            + [
                {
                    "id": 4,
                    "email": "new@mail.example",
                    "first_name": "Новый",
                    "last_name": "Клиент",
                    "gender": "m",
                    "city": "Казань",
                    "language": "ru",
                    "marketing_consent": False,
                    "registered_at": now - timedelta(minutes=3),
                }
            ],
        )
        orders = [  # order 10: received a minute ago; 11: received 3 days ago (too old to mail)
            {
                "id": 10,
                "customer_id": 1,
                "status": "received",
                "created_at": now - timedelta(minutes=1),
                "total": 300,
                "currency": "RUB",
            },
            {
                "id": 11,
                "customer_id": 2,
                "status": "received",
                "created_at": now - timedelta(days=3),
                "total": 200,
                "currency": "RUB",
            },
        ]
        conn.execute(insert(s.orders), orders)
        conn.execute(
            insert(s.order_items),
            [
                {"order_id": 10, "product_id": 1, "qty": 1, "price": 100},
                {"order_id": 10, "product_id": 2, "qty": 1, "price": 200},
                {"order_id": 11, "product_id": 3, "qty": 1, "price": 200},
            ],
        )
        conn.execute(
            insert(s.order_status_history),
            [
                {"order_id": 10, "status": "received", "changed_at": now - timedelta(minutes=1)},
                {"order_id": 11, "status": "received", "changed_at": now - timedelta(days=3)},
            ],
        )
    return settings


def _ledger(settings: Settings) -> dict[str, str]:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(select(send_ledger.c.occasion_key, send_ledger.c.status)).all()
    return dict(rows)


def _ship(settings: Settings, order_id: int) -> None:
    engine = get_engine(settings.shop_url_resolved)
    with engine.begin() as conn:
        conn.execute(
            insert(s.order_status_history).values(order_id=order_id, status="shipped", changed_at=_now())
        )
        conn.execute(
            s.orders.update().where(s.orders.c.id == order_id).values(status="shipped", tracking_number="RA1")
        )


def test_each_event_is_mailed_once_within_a_poll(prefect_harness, live_shop: Settings) -> None:
    from flows.service_poller import service_poller, watermark_name

    first = service_poller()
    assert first["order_received"].counts()["sent"] == 1
    assert first["welcome"].counts()["sent"] == 1
    # not order 11; the welcome series' first step
    assert _ledger(live_shop) == {"order:10:received": "sent", "welcome:4:step1": "sent"}
    state = state_db.upgrade(live_shop.state_url_resolved)
    mark = state_db.get_watermark(state, watermark_name("order_received"))
    assert mark is not None and _now() - mark < timedelta(minutes=2)

    again = service_poller()  # the overlap re-reads the same events: the ledger skips them
    assert sum(r.counts()["sent"] for r in again.values()) == 0

    _ship(live_shop, 10)
    third = service_poller()
    assert set(third) == {"order_shipped"} and third["order_shipped"].counts()["sent"] == 1
    assert _ledger(live_shop)["order:10:shipped"] == "sent"
    shipped = [p for p in live_shop.outbox_path.glob("*.eml") if "RA1" in p.read_text(encoding="utf-8")]
    assert len(shipped) == 1


def test_failed_send_keeps_the_watermark_and_the_next_poll_sends(
    prefect_harness, live_shop: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.service_poller import service_poller, watermark_name

    with running_sink() as sink:
        sink.store.api_key = "SG.right"
        monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "sendgrid")
        monkeypatch.setenv("SHOPMAIL_SENDGRID_HOST", sink.url)
        monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.wrong")
        get_settings.cache_clear()
        with pytest.raises(RuntimeError, match="retried next poll"):
            service_poller(campaigns=["order_received"])
        state = state_db.upgrade(live_shop.state_url_resolved)
        assert state_db.get_watermark(state, watermark_name("order_received")) is None
        assert sink.store.messages == []

        monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.right")
        get_settings.cache_clear()
        reports = service_poller(campaigns=["order_received"])
        assert reports["order_received"].counts()["sent"] == 1 and len(sink.store.messages) == 1
        assert state_db.get_watermark(state, watermark_name("order_received")) is not None


def test_dry_run_leaves_watermarks_and_ledger_alone(prefect_harness, live_shop: Settings) -> None:
    from flows.service_poller import service_poller

    reports = service_poller(dry_run=True)
    assert reports["order_received"].outcomes["would_send"] == 1
    state = state_db.upgrade(live_shop.state_url_resolved)
    with state.connect() as conn:
        assert conn.execute(select(send_ledger)).all() == []
    assert state_db.get_watermark(state, "service:order_received") is None


def _received_orders(settings: Settings, ids: range, at: datetime) -> None:
    """Orders received at `at` (one item each) for the live shop's customers 1-3."""
    engine = get_engine(settings.shop_url_resolved)
    with engine.begin() as conn:
        conn.execute(
            insert(s.orders),
            [
                {"id": i, "customer_id": 1 + i % 3, "status": "received", "created_at": at, "total": 100}
                | {"currency": "RUB"}
                for i in ids
            ],
        )
        conn.execute(
            insert(s.order_items), [{"order_id": i, "product_id": 1, "qty": 1, "price": 100} for i in ids]
        )
        conn.execute(
            insert(s.order_status_history),
            [{"order_id": i, "status": "received", "changed_at": at} for i in ids],
        )


def test_mails_failed_by_5xx_are_retried_by_the_next_polls_none_lost(
    prefect_harness, live_shop: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One poll meets 15 % HTTP 500 (no retries: those mails end `failed`), the next polls are healthy:
    every order mail goes out exactly once; the watermark waits at the earliest failed event."""
    from flows.service_poller import service_poller, watermark_name
    from shopmail.devtools.sink_faults import Faults

    orders = range(100, 180)
    _received_orders(live_shop, orders, _now() - timedelta(minutes=2))
    with running_sink() as sink:
        monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "sendgrid")
        monkeypatch.setenv("SHOPMAIL_SENDGRID_HOST", sink.url)
        monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.test-key")
        monkeypatch.setenv("SHOPMAIL_SENDGRID_RETRIES", "0")
        monkeypatch.setenv("SHOPMAIL_UNSUBSCRIBE_SECRET", "poller-test-unsubscribe-secret")
        monkeypatch.setenv("SHOPMAIL_COUPON_SECRET", "poller-test-coupon-secret")
        monkeypatch.setenv("SHOPMAIL_SENDER_EMAIL", "news@mailings.test")
        get_settings.cache_clear()
        sink.store.set_faults(Faults(rate_500=0.15, seed=3))
        first = service_poller(campaigns=["order_received"])["order_received"]
        failed = first.outcomes["failed"]
        assert failed > 0  # the faults really hit some mails
        state = state_db.upgrade(live_shop.state_url_resolved)
        held = state_db.get_watermark(state, watermark_name("order_received"))
        assert held is not None and held <= _now() - timedelta(minutes=2)  # not past the failed events

        sink.store.set_faults(Faults())
        second = service_poller(campaigns=["order_received"])["order_received"]
        assert second.outcomes["sent"] == failed
        service_poller(campaigns=["order_received"])  # nothing left: the watermark catches up
        assert state_db.get_watermark(state, watermark_name("order_received")) > _now() - timedelta(minutes=1)

        received = Counter(
            p["custom_args"]["occasion"] for m in sink.store.messages for p in m.payload["personalizations"]
        )
    wanted = {f"order:{i}:received" for i in [10, *orders]}
    assert set(received) == wanted and max(received.values()) == 1  # 0 lost, 0 twice
    ledger_rows = _ledger(live_shop)
    assert {ledger_rows[k] for k in wanted} == {"sent"}


def test_a_mail_unsent_past_max_age_is_reported_expired(prefect_harness, live_shop: Settings) -> None:
    """The watermark waited at a failed mail (order 12, received 37 hours ago); now the event is older
    than `max_age_hours` (36): the mail is closed as `expired` and counted, not silently dropped."""
    from flows.service_poller import service_poller, watermark_name
    from shopmail.mailer.base import SendResult, SendStatus
    from shopmail.state import ledger

    received = _now() - timedelta(hours=37)
    _received_orders(live_shop, range(12, 13), received)
    state = state_db.upgrade(live_shop.state_url_resolved)
    [key] = ledger.claim(state, [ledger.LedgerEntry("order_received", "order:12:received", 1)], "r", "x").keys
    ledger.mark(state, [SendResult(key, SendStatus.failed, error="HTTP 500")], "r")
    state_db.set_watermark(state, watermark_name("order_received"), received)
    reports = service_poller(campaigns=["order_received"])
    assert reports["order_received"].outcomes["expired"] == 1
    assert _ledger(live_shop) == {"order:12:received": "expired", "order:10:received": "sent"}
    again = service_poller(campaigns=["order_received"])  # closed once
    assert all(r.outcomes.get("expired", 0) == 0 for r in again.values())
