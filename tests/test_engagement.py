"""Engagement from the SendGrid event webhook: each mail's outcome (`mail_results`), rates per group,
clicks per link, revenue after click; a duplicated and reordered stream counts each event once."""

from __future__ import annotations

import random
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, insert, select

from shopmail.db import get_engine
from shopmail.results.engagement import (
    count_engagement,
    count_links,
    engagement_report,
    last_click_orders,
    split_link,
)
from shopmail.shop import schema as shop_schema
from shopmail.state import state_db
from shopmail.state.engagement import BOUNCE_BLOCKED, BOUNCE_HARD, BOUNCE_SOFT, record_mails, settle_sent
from shopmail.state.feedback import record_events
from shopmail.state.ledger import message_key
from shopmail.state.schema import mail_results, provider_events, send_ledger, suppressions

T0 = datetime(2026, 11, 20, 9, 0)
SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def migrated_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "state.sqlite"
    state_db.upgrade(f"sqlite:///{path}").dispose()
    return path


def _state(tmp_path: Path, template: Path, name: str = "state.sqlite") -> Engine:
    path = tmp_path / name
    shutil.copyfile(template, path)
    return get_engine(f"sqlite:///{path}")


@pytest.fixture
def state(tmp_path: Path, migrated_state_file: Path) -> Engine:
    return _state(tmp_path, migrated_state_file)


def _mail(
    state: Engine, campaign: str, customer: int, sent_at: datetime = T0, occasion: str = "occ", **facts: str
) -> str:
    """A sent mail: its ledger row and its facts."""
    key = message_key(campaign, occasion, customer)
    with state.begin() as conn:
        conn.execute(
            insert(send_ledger).values(
                campaign=campaign,
                occasion_key=occasion,
                customer_id=customer,
                message_key=key,
                status="sent",
                run_id="run-1",
                attempts=1,
                created_at=sent_at,
                updated_at=sent_at,
            )
        )
    record_mails(
        state, [{"message_key": key, "campaign": campaign, "customer_id": customer, **facts}], sent_at
    )
    assert settle_sent(state, campaign, sent_at) == 1
    return key


_ids = iter(range(10**9))


def _ev(kind: str, key: str, customer: int, at: datetime, campaign: str = "sale", **extra) -> dict:
    """A SendGrid webhook event of the mail `key` at naive-UTC `at`."""
    return {
        "sg_event_id": f"ev-{next(_ids)}",
        "event": kind,
        "email": f"c{customer}@example.com",
        "timestamp": int((at - datetime(1970, 1, 1)).total_seconds()),
        "shopmail_key": key,
        "campaign": campaign,
        "customer_id": str(customer),
        **extra,
    }


def _stream(state: Engine) -> tuple[list[dict], dict[str, str]]:
    """Mails of two variants and the events of their fate; returns (events, key -> what happened)."""
    events: list[dict] = []
    fate: dict[str, str] = {}
    for customer in range(1, 41):
        variant = "a" if customer % 2 else "b"
        key = _mail(state, "sale", customer, test_variant=variant, language="ru")
        at = T0 + timedelta(minutes=1)
        events.append(_ev("processed", key, customer, at))
        if customer % 10 == 0:
            events.append(
                _ev("bounce", key, customer, at, type="bounce", bounce_classification="Invalid Address")
            )
            fate[key] = "hard"
            continue
        if customer % 10 == 5:
            events.append(
                _ev("bounce", key, customer, at, type="blocked", bounce_classification="Reputation")
            )
            fate[key] = "blocked"
            continue
        if customer % 10 == 7:
            events.append(
                _ev("bounce", key, customer, at, type="blocked", bounce_classification="Technical Failure")
            )
            fate[key] = "soft"
            continue
        events.append(_ev("delivered", key, customer, at + timedelta(seconds=5)))
        if customer % 3 == 0:  # an Apple Mail user: the app opens it at once
            events.append(_ev("open", key, customer, at + timedelta(seconds=6), sg_machine_open=True))
            fate[key] = "machine"
        if customer % 4 == 0:  # a person opens it
            events.append(_ev("open", key, customer, at + timedelta(minutes=30), sg_machine_open=False))
            fate[key] = fate.get(key, "") + "+open"
        if customer in (4, 8, 13):  # clicks (13: a click without an open event: images off)
            url = (
                f"{SHOP}/p/{customer}?utm_source=shopmail&utm_medium=email&utm_campaign=sale&utm_content=cta"
            )
            events.append(_ev("click", key, customer, at + timedelta(minutes=40), url=url))
            events.append(_ev("click", key, customer, at + timedelta(minutes=41), url=url))
            fate[key] = fate.get(key, "") + "+click"
    return events, fate


def _table(state: Engine, table) -> list[dict]:
    with state.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def test_a_duplicated_and_reordered_stream_counts_each_event_once(
    tmp_path: Path, migrated_state_file: Path
) -> None:
    clean, _ = _stream(ordered := _state(tmp_path, migrated_state_file, "ordered.sqlite"))
    mixed_state = _state(tmp_path, migrated_state_file, "mixed.sqlite")
    mixed, _ = _stream(mixed_state)
    assert [e["sg_event_id"] for e in mixed] != [e["sg_event_id"] for e in clean]
    # the same events (same ids) as the clean stream, in the mixed DB's own mail rows
    mixed = [{**m, "sg_event_id": c["sg_event_id"]} for m, c in zip(mixed, clean, strict=True)]

    record_events(ordered, clean)
    rng = random.Random(3)
    noisy = mixed + rng.sample(mixed, len(mixed) // 2)  # SendGrid delivers at least once
    rng.shuffle(noisy)  # ... and in no particular order
    for start in range(0, len(noisy), 7):
        record_events(mixed_state, noisy[start : start + 7])
    record_events(mixed_state, mixed[:20])  # a whole batch again (a retry after a lost answer)

    def count(engine: Engine) -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(provider_events)).scalar_one()

    assert count(mixed_state) == count(ordered) == len(clean)
    assert _table(mixed_state, mail_results) == _table(ordered, mail_results)
    by_variant = {
        e.label["variant"]: e
        for e in count_engagement(mixed_state, "sale", T0, T0 + timedelta(1), ["variant"])
    }
    assert sum(e.clicked for e in by_variant.values()) == 3
    assert sum(e.hard_bounces for e in by_variant.values()) == 4


def test_outcomes_per_mail_and_machine_opens_left_out_of_open_rates(state: Engine) -> None:
    events, fate = _stream(state)
    summary = record_events(state, events)
    assert summary.stored == len(events) and summary.suppressed == 4  # hard bounces only
    with state.connect() as conn:
        suppressed = {e for (e,) in conn.execute(select(suppressions.c.email))}
    assert suppressed == {f"c{c}@example.com" for c in (10, 20, 30, 40)}
    rows = {r["message_key"]: r for r in _table(state, mail_results)}
    bounce = {"hard": BOUNCE_HARD, "blocked": BOUNCE_BLOCKED, "soft": BOUNCE_SOFT}
    for key, what in fate.items():
        if what in bounce:
            assert rows[key]["bounce"] == bounce[what] and rows[key]["delivered_at"] is None
    only_machine = [k for k, v in fate.items() if v == "machine"]
    assert only_machine and all(rows[k]["opened_at"] is None for k in only_machine)
    assert all(rows[k]["machine_opened_at"] is not None for k in only_machine)

    (total,) = count_engagement(state, "sale", T0, T0 + timedelta(1))
    delivered = 40 - 12
    people = sum(1 for v in fate.values() if "+open" in v or "+click" in v)
    machines = sum(1 for v in fate.values() if v.startswith("machine"))
    assert (total.sent, total.delivered) == (40, delivered)
    assert (total.hard_bounces, total.soft_bounces, total.blocked) == (4, 4, 4)
    assert total.opened == people and total.machine_opened == machines
    assert total.open_rate == pytest.approx(people / delivered)
    assert total.clicked == 3 and total.first_click_minutes == pytest.approx(41)
    (with_machines,) = count_engagement(state, "sale", T0, T0 + timedelta(1), with_machine_opens=True)
    assert with_machines.opened == total.opened_any > people  # machine opens would inflate the rate

    links = count_links(state, "sale", T0, T0 + timedelta(1))
    assert {(link.place, link.page, link.clicks, link.mails) for link in links} == {
        ("cta", f"{SHOP}/p/{c}", 2, 1) for c in (4, 8, 13)
    }


def test_split_link_keeps_the_page_and_names_the_button() -> None:
    assert split_link(f"{SHOP}/p/7?color=red&utm_source=s&utm_content=related&utm_campaign=x#top") == (
        "related",
        f"{SHOP}/p/7?color=red",
    )
    assert split_link(f"{SHOP}/") == ("", f"{SHOP}/")


def _orders(shop: Engine, rows: list[tuple[int, int, datetime, float, str]]) -> None:
    with shop.begin() as conn:
        conn.execute(
            insert(shop_schema.orders),
            [
                {
                    "id": i,
                    "customer_id": c,
                    "created_at": at,
                    "total": total,
                    "status": status,
                    "currency": "RUB",
                }
                for i, c, at, total, status in rows
            ],
        )


def test_revenue_after_click_goes_to_the_last_click_inside_the_window(state: Engine, tmp_path: Path) -> None:
    shop = get_engine(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    shop_schema.metadata.create_all(shop)
    a1 = _mail(state, "sale", 1, test_variant="a")
    b2 = _mail(state, "sale", 2, test_variant="b")
    b3 = _mail(state, "sale", 3, test_variant="b")
    w1 = _mail(state, "wakeup", 1, sent_at=T0 + timedelta(days=1))
    url = f"{SHOP}/?utm_content=cta"
    record_events(
        state,
        [
            _ev("click", a1, 1, T0 + timedelta(hours=1), url=url),
            _ev("click", w1, 1, T0 + timedelta(days=2), campaign="wakeup", url=url),
            _ev("click", b2, 2, T0 + timedelta(hours=2), url=url),
            _ev("click", b3, 3, T0 + timedelta(hours=3), url=url),
        ],
    )
    _orders(
        shop,
        [
            (101, 1, T0 + timedelta(hours=5), 1000.0, "delivered"),  # after sale's click: sale, variant a
            (102, 1, T0 + timedelta(days=3), 700.0, "delivered"),  # after wakeup's later click: wakeup
            (103, 2, T0 + timedelta(days=6, hours=23), 500.0, "paid"),  # 6 d 21 h after the click: inside 7 d
            (104, 2, T0 + timedelta(days=7, hours=3), 400.0, "paid"),  # 7 d 1 h after: outside
            (105, 3, T0 + timedelta(hours=4), 300.0, "cancelled"),  # cancelled: never
            (106, 3, T0 + timedelta(hours=2), 200.0, "paid"),  # before the click: not after a click
        ],
    )
    report = engagement_report(
        state, shop, "sale", T0 - timedelta(hours=1), T0 + timedelta(hours=1), window_days=7
    )
    by = {g.label["variant"]: g for g in report.groups}
    assert (by["a"].orders_after_click, by["a"].revenue_after_click) == (1, 1000.0)
    assert (by["b"].orders_after_click, by["b"].revenue_after_click) == (1, 500.0)
    assert (report.total.orders_after_click, report.total.revenue_after_click) == (2, 1500.0)
    wakeup = engagement_report(state, shop, "wakeup", T0, T0 + timedelta(days=2), by=(), window_days=7)
    assert (wakeup.total.orders_after_click, wakeup.total.revenue_after_click) == (1, 700.0)
    narrow = engagement_report(
        state, shop, "sale", T0 - timedelta(hours=1), T0 + timedelta(hours=1), window_days=1
    )
    assert narrow.total.orders_after_click == 1  # order 103 is 6 days after its click


def test_last_click_orders_without_clicks_or_orders() -> None:
    empty = pd.DataFrame(
        columns=["customer_id", "clicked_at", "message_key", "campaign", "variant", "sent_at"]
    )
    orders = pd.DataFrame(
        [(1, 1, T0, 10.0, "paid")], columns=["order_id", "customer_id", "created_at", "total", "status"]
    )
    assert last_click_orders(empty, orders, 7).empty


def test_unsubscribe_through_the_link_marks_the_latest_mail(state: Engine) -> None:
    from shopmail.mail.links import unsubscribe_token
    from shopmail.state.feedback import unsubscribe

    older = _mail(state, "sale", 5, sent_at=T0 - timedelta(days=3), occasion="sale:1")
    newer = _mail(state, "sale", 5, sent_at=T0, occasion="sale:2")
    other = _mail(state, "wakeup", 5, sent_at=T0 + timedelta(hours=1))
    assert unsubscribe(state, "s3cret", unsubscribe_token("s3cret", 5, "sale"))
    rows = {r["message_key"]: r for r in _table(state, mail_results)}
    assert rows[newer]["unsubscribed_at"] is not None
    assert rows[older]["unsubscribed_at"] is None and rows[other]["unsubscribed_at"] is None
    (sale,) = count_engagement(state, "sale", T0 - timedelta(days=5), T0 + timedelta(days=1))
    assert sale.unsubscribed == 1


def test_concurrent_overlapping_batches_on_postgresql_store_each_event_once() -> None:
    """SendGrid posts batches in parallel and retries some: on PostgreSQL four deliveries at once,
    overlapping and in different orders, neither deadlock nor double-count."""
    import threading

    from tests.test_shop_databases import SERVERS, _scratch_database

    scratch = _scratch_database(SERVERS["postgresql"])
    url = next(scratch)
    try:
        engine = state_db.upgrade(url)
        events, _ = _stream(engine)
        batches = []
        for seed in range(4):  # every event in every delivery, each in its own order
            shuffled = list(events)
            random.Random(seed).shuffle(shuffled)
            batches += [shuffled[i : i + 25] for i in range(0, len(shuffled), 25)]
        errors: list[BaseException] = []
        start = threading.Barrier(4)

        def deliver(part: list[list[dict]]) -> None:
            start.wait()
            try:
                for batch in part:
                    record_events(engine, batch)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=(batches[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(provider_events)).scalar_one() == len(events)
        (total,) = count_engagement(engine, "sale", T0, T0 + timedelta(days=1))
        assert (total.clicked, total.hard_bounces, total.delivered) == (3, 4, 28)
    finally:
        next(scratch, None)


def test_many_facts_go_through_copy_on_postgresql_and_a_rerun_updates_them() -> None:
    from shopmail.state.engagement import COPY_ABOVE, settle_sent
    from tests.test_shop_databases import SERVERS, _scratch_database

    scratch = _scratch_database(SERVERS["postgresql"])
    url = next(scratch)
    try:
        engine = state_db.upgrade(url)
        mails = [
            {"message_key": f"k{i:06d}", "campaign": "sale", "customer_id": i, "test_variant": "a"}
            for i in range(COPY_ABOVE + 500)
        ]
        assert record_mails(engine, mails, T0) == len(mails)
        record_mails(
            engine, [{**m, "test_variant": "b", "language": "en"} for m in mails[:10]], T0
        )  # a rerun
        record_events(engine, [_ev("delivered", "k000003", 3, T0 + timedelta(minutes=1))])
        record_mails(
            engine, [{**m, "segment": "vip"} for m in mails], T0 + timedelta(minutes=2)
        )  # via COPY again
        with engine.begin() as conn:
            conn.execute(
                insert(send_ledger),
                [
                    {"campaign": "sale", "occasion_key": "o", "customer_id": i, "message_key": f"k{i:06d}",
                     "status": "sent", "run_id": "r", "attempts": 1, "created_at": T0, "updated_at": T0}
                    for i in range(20)
                ],
            )  # fmt: skip
        assert settle_sent(engine, "sale", T0) == 20
        rows = {r["message_key"]: r for r in _table(engine, mail_results)}
        assert len(rows) == len(mails) and rows["k000003"]["delivered_at"] is not None  # outcome kept
        assert rows["k000003"]["segment"] == "vip" and rows["k000003"]["test_variant"] == "a"
        assert rows["k000003"]["sent_at"] == T0 and rows["k000030"]["sent_at"] is None
    finally:
        next(scratch, None)
