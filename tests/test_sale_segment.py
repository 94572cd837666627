"""The sale campaign's audience, with and without a segment; segment snapshots and `explain`."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config.settings import Settings
from segments.audiences.sale import sale_audience, sale_products
from segments.rules import SegmentError
from segments.segment_snapshot import prune_snapshots, write_segment_snapshot
from shopmail.campaigns import get_campaign
from shopmail.mailer.base import SendResult
from shopmail.run.pipeline import select_recipients
from shopmail.run.why import explain, latest_run_for
from shopmail.state import ledger, state_db

MSK = ZoneInfo("Europe/Moscow")
AS_OF = date(2026, 11, 23)
PARAMS = {"sale_id": "bf26", "headline": "Распродажа", "discount_text": "-30 %", "ends_on": "2026-11-30"}


def _frames() -> dict[str, pd.DataFrame]:
    customers = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "email": ["a@x.example", "b@x.example", "c@x.example", "d@x.example", "broken"],
            "first_name": ["Анна", "Борис", "Вера", None, "Дарья"],
            "last_name": ["А", "Б", "В", None, "Д"],
            "gender": ["f", "m", "f", None, "f"],
            "birth_date": pd.to_datetime(["1990-01-01", "1980-01-01", None, None, "2001-05-05"]),
            "city": ["Москва", "Москва", "Казань", "Москва", "Москва"],
            "registered_at": pd.to_datetime(["2024-01-01"] * 5),
            "marketing_consent": [True, True, False, True, True],
            "discount_card": [None] * 5,
            "language": ["ru", "en", "ru", "ru", "ru"],
        }
    )
    products = pd.DataFrame(
        {
            "id": [100, 101, 102, 103, 104],
            "name": ["Духи", "Тушь", "Смартфон", "Кеды", "Книга"],
            "brand": ["Chanel", "Maybelline", "Apple", "Nike", "АСТ"],
            "category": ["Парфюмерия", "Косметика", "Смартфоны", "Обувь", "Книги"],
            "price": [7000.0, 500.0, 90000.0, 6000.0, 600.0],
            "url": [f"https://shop.example/p/{i}" for i in range(100, 105)],
            "image_url": [None] * 5,
            "in_stock": [True, True, True, False, True],
            "overstock": [True, True, False, True, True],
            "created_at": pd.to_datetime(["2025-01-01"] * 5),
        }
    )
    orders = pd.DataFrame(
        {
            "id": [10, 11, 12],
            "customer_id": [1, 2, 4],
            "status": ["delivered", "delivered", "cancelled"],
            "created_at": pd.to_datetime(["2026-11-01", "2026-10-01", "2026-11-10"]),
            "total": [60000.0, 2000.0, 99000.0],
        }
    )
    items = pd.DataFrame(
        {
            "order_id": [10, 10, 11, 12],
            "product_id": [100, 104, 104, 101],
            "qty": [1, 1, 3, 9],
            "price": [7000.0, 600.0, 600.0, 500.0],
        }
    )
    return {"customers": customers, "orders": orders, "order_items": items, "products": products}


def test_sale_products_are_in_stock_overstock_best_sellers_first() -> None:
    f = _frames()
    # 104 sold 4 units, 100 one, 101's units were in a cancelled order; 103 is out of stock, 102 not overstock
    assert sale_products(f["products"], f["orders"], f["order_items"], AS_OF, limit=6) == [104, 100, 101]
    assert sale_products(f["products"], f["orders"], f["order_items"], AS_OF, limit=2) == [104, 100]
    only = sale_products(f["products"], f["orders"], f["order_items"], AS_OF, 6, categories=[" косметика "])
    assert only == [101]


def test_sale_audience_is_everyone_until_the_sale_ends() -> None:
    audience = sale_audience(_frames(), AS_OF, MSK, **PARAMS, limit=2)
    assert audience["customer_id"].tolist() == [1, 2, 3, 4, 5]
    row = audience.iloc[0]
    assert (row["sale_id"], row["headline_en"], row["discount_text_en"]) == ("bf26", "Распродажа", "-30 %")
    assert row["ends_on"] == date(2026, 11, 30) and row["products"] == [104, 100]
    assert len(sale_audience(_frames(), date(2026, 11, 30), MSK, **PARAMS)) == 5  # last day included
    assert sale_audience(_frames(), date(2026, 12, 1), MSK, **PARAMS).empty
    none_left = sale_audience(_frames(), AS_OF, MSK, **PARAMS, categories=["Смартфоны"])
    assert none_left.empty
    announce = sale_audience(_frames(), AS_OF, MSK, **PARAMS, categories=["Смартфоны"], min_products=0)
    assert len(announce) == 5 and announce["products"].iloc[0] == []
    with pytest.raises(ValueError, match="sale_id"):
        sale_audience(_frames(), AS_OF, MSK, **{**PARAMS, "sale_id": "Black Friday"})


def _sale(**update):
    campaign = get_campaign("sale")
    params = {**campaign.params, **PARAMS}
    return campaign.model_copy(update={"params": params, **update})


def _select(settings: Settings, campaign, segment=None):
    state = state_db.upgrade(settings.state_url_resolved)
    extra = {} if segment is None else {"segment": segment}
    return select_recipients(campaign, _frames(), AS_OF, settings, state, set(), **extra), state


def test_sale_without_a_segment_goes_to_every_subscribed_customer(settings: Settings) -> None:
    selection, _ = _select(settings, _sale())
    assert selection.audience_size == 5
    assert selection.eligible["customer_id"].tolist() == [1, 2, 4]
    assert selection.skipped_by_reason() == {"no_consent": 1, "invalid_email": 1}
    assert set(selection.eligible["occasion_key"]) == {"sale:bf26"}
    snapshot = selection.segment_snapshot
    assert snapshot.segment is None and snapshot.frame()["outcome"].tolist() == [
        "eligible",
        "eligible",
        "no_consent",
        "eligible",
        "invalid_email",
    ]


def test_sale_with_a_segment_and_the_campaign_default(settings: Settings) -> None:
    women, _ = _select(settings, _sale(), segment="women")
    assert women.audience_size == 3  # 1, 3, 5; 3 has no consent, 5 a broken address
    assert women.eligible["customer_id"].tolist() == [1]
    vip, _ = _select(settings, _sale(), segment="vip")  # spend >= 150,000: nobody
    assert vip.audience_size == 0 and vip.eligible.empty
    perfume = _select(settings, _sale(segment="beauty_buyers"))[0]  # default segment of the campaign
    assert perfume.eligible["customer_id"].tolist() == [1]  # 4's beauty order was cancelled
    everyone = _select(settings, _sale(segment="beauty_buyers"), segment="all")[0]
    assert everyone.eligible["customer_id"].tolist() == [1, 2, 4]
    with pytest.raises(SegmentError, match="unknown segment 'nope'"):
        _select(settings, _sale(), segment="nope")


def test_a_segment_needs_the_datasets_its_features_read(settings: Settings) -> None:
    campaign = _sale(datasets=("customers", "products"))
    with pytest.raises(SegmentError, match=r"campaign 'sale' cannot use segment 'vip'.*add \['orders'\]"):
        _select(settings, campaign, segment="vip")
    new_arrivals = get_campaign("new_arrivals")
    assert "orders" not in new_arrivals.datasets
    frames = _frames()
    frames["products"]["created_at"] = pd.Timestamp("2026-11-22")
    state = state_db.upgrade(settings.state_url_resolved)
    ok = select_recipients(new_arrivals, frames, AS_OF, settings, state, set(), segment="women")
    assert ok.eligible["customer_id"].tolist() == [1]  # a customers-only segment works anywhere
    with pytest.raises(SegmentError, match=r"add \['orders', 'order_items'\]"):
        select_recipients(new_arrivals, frames, AS_OF, settings, state, set(), segment="electronics_buyers")


def _send(state, selection, run_id: str) -> None:
    entries = [
        ledger.LedgerEntry("sale", occ, int(cid))
        for occ, cid in zip(
            selection.eligible["occasion_key"], selection.eligible["customer_id"], strict=True
        )
    ]
    claim = ledger.claim(state, entries, run_id, "memory")
    ledger.mark(state, [SendResult(k, "sent", f"pid-{k[:6]}") for k in claim.keys])


def test_the_same_sale_never_reaches_a_customer_twice(settings: Settings) -> None:
    first, state = _select(settings, _sale(), segment="women")
    _send(state, first, "run-women")
    everyone, _ = _select(settings, _sale())
    assert everyone.eligible["customer_id"].tolist() == [2, 4]
    assert everyone.skipped_by_reason()["already_sent"] == 1
    next_sale, _ = _select(settings, _sale(params={**PARAMS, "sale_id": "bf27"}))
    reasons = dict(zip(next_sale.skipped["customer_id"], next_sale.skipped["reason"], strict=True))
    assert reasons.get(1) != "already_sent"  # a new sale is a new occasion (a frequency cap may apply)
    assert {2, 4} <= set(next_sale.eligible["customer_id"])


def test_snapshot_and_explain(settings: Settings) -> None:
    selection, state = _select(settings, _sale(), segment="beauty_women_not_recent")
    assert selection.eligible.empty  # customer 1 (woman, perfume) ordered 22 days ago
    selection, state = _select(settings, _sale(), segment="beauty_buyers")
    assert selection.eligible["customer_id"].tolist() == [1]
    state_db.start_run(state, "run-1", "sale", AS_OF, False)
    _send(state, selection, "run-1")
    path = write_segment_snapshot(settings.data_dir, "run-1", selection.segment_snapshot)
    assert path == settings.data_dir / "snapshots" / "run-1.csv.gz" and path.is_file()
    members = pd.read_csv(path)
    assert members.columns.tolist() == [
        "customer_id",
        "outcome",
        "categories[]",
        "categories[Косметика]",
        "categories[Парфюмерия]",
    ]
    assert members["customer_id"].tolist() == [1]

    why = explain(1, "run-1", data_dir=settings.data_dir, state=state)
    text = why.text()
    assert why.member and why.outcome == "eligible" and why.segment == "beauty_buyers"
    assert "Segment: beauty_buyers (Покупатели косметики и парфюмерии)" in text
    assert "✓ segment beauty_buyers:" in text
    assert '✓ categories contains any of ["Косметика", "Парфюмерия"]   (categories: Парфюмерия)' in text
    assert "sent: sale:bf26" in text and "(this run)" in text
    assert "@" not in text  # no addresses

    other = explain(2, "run-1", data_dir=settings.data_dir, state=state)
    assert not other.member and "Not in the run's audience" in other.text()
    assert latest_run_for(state, 1, "sale") == "run-1"
    assert latest_run_for(state, 2, "sale") is None

    missing = explain(1, "run-unknown", data_dir=settings.data_dir, state=state)
    assert not missing.snapshot_found and "No snapshot of this run" in missing.text()
    with pytest.raises(ValueError, match="not a run id"):
        explain(1, "../etc/passwd", data_dir=settings.data_dir)

    assert write_segment_snapshot(settings.data_dir, "run-none", None) is None
    assert prune_snapshots(settings.data_dir, keep_days=1) == 0
    assert prune_snapshots(settings.data_dir, keep_days=-1) == 2  # the .json and the .csv.gz


def test_explain_traces_numbers_dates_and_nested_references(settings: Settings) -> None:
    selection, state = _select(settings, _sale(), segment="vip_lapsed")
    assert selection.audience_size == 0
    selection, _ = _select(settings, _sale(), segment="moscow")
    write_segment_snapshot(settings.data_dir, "run-2", selection.segment_snapshot)
    why = explain(4, "run-2", data_dir=settings.data_dir)
    assert why.outcome == "eligible"
    assert '✓ city = "Москва"   (city: Москва)' in why.text()
    no_consent = explain(3, "run-2", data_dir=settings.data_dir)
    assert not no_consent.member  # Казань


def test_snapshot_round_trips_every_kind_of_value(settings: Settings) -> None:
    from segments.rules import parse_segments
    from segments.segment_snapshot import restrict_to_segment

    catalogue = parse_segments(
        {
            "segments": {
                "buyers": {"title": "Buyers", "rule": {"field": "last_order_at", "gte": date(2026, 10, 1)}},
                "mixed": {
                    "title": "Mixed",
                    "rule": {
                        "all": [
                            {"segment": "buyers"},
                            {"field": "has_card", "ne": True},
                            {"any": [{"field": "age", "is_null": True}, {"field": "age", "gte": 30}]},
                            {"not": {"field": "brands", "contains_all": ["Apple", "Nike"]}},
                            {"field": "recency_days", "lte": 60},
                        ]
                    },
                },
            }
        }
    )
    frames = _frames()
    audience = sale_audience(frames, AS_OF, MSK, **PARAMS)
    kept, snapshot = restrict_to_segment(
        "sale", tuple(frames), "mixed", frames, audience, AS_OF, MSK, catalogue=catalogue
    )
    assert kept["customer_id"].tolist() == [1, 2]
    snapshot.with_outcomes(pd.Series([1]), pd.DataFrame({"customer_id": [2], "reason": ["suppressed"]}))
    write_segment_snapshot(settings.data_dir, "run-3", snapshot)
    text = explain(2, "run-3", data_dir=settings.data_dir).text()
    assert "outcome: address blocked (bounce, spam report)" in text
    for line in (
        "✓ last_order_at ≥ 2026-10-01   (last_order_at: 2026-10-01 00:00 UTC)",
        "✓ has_card ≠ true   (has_card: False)",
        "✓ age ≥ 30   (age: 46)",
        "✗ age is missing   (age: 46)",
        '✓ not:\n        ✗ brands contains all of ["Apple", "Nike"]   (brands: (other values))',
        "✓ recency_days ≤ 60   (recency_days: 53)",
    ):
        assert line in text, line
    one = explain(1, "run-3", data_dir=settings.data_dir).text()
    assert "outcome: chosen to get the mail" in one and "(last_order_at: 2026-11-01 00:00 UTC)" in one
