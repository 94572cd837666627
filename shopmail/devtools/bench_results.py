"""Benchmark of the results reports on a month of a million-customer shop.

`python -m shopmail.devtools.bench_results [--customers 1000000] [--state-url postgresql://...]`

Seeds a state DB with a month of mails as such a shop sends them: four weekly `new_arrivals` to the
60 % with marketing consent (two subject variants), daily triggers and service mails; each with its
outcome as the webhook folds it in (delivered, bounces, machine and human opens, clicks,
unsubscribes) and the click events themselves (the only raw events a report reads), plus a shop DB
with the clickers' orders (each mail settled, as the send step leaves it). Then times what a marketer
asks for: `shopmail report new_arrivals`
(per variant, links, revenue after click), per language, per run, and `shopmail history`.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from shopmail.db import get_engine  # noqa: E402
from shopmail.results.engagement import engagement_of_runs, report_for_days  # noqa: E402
from shopmail.shop import schema as shop_schema  # noqa: E402
from shopmail.state import state_db  # noqa: E402
from shopmail.state.ledger import message_key  # noqa: E402
from shopmail.state.schema import mail_results, provider_events, send_ledger  # noqa: E402

TZ = ZoneInfo("Europe/Moscow")
FIRST = date(2026, 11, 1)
DAYS = 30
LINKS = [
    f"https://shop.example/p/{i}?utm_source=shopmail&utm_medium=email&utm_content=related" for i in range(60)
]
CHUNK = 20_000


def month_of_mails(customers: int, seed: int = 7):
    """(campaign, occasion, customer, sent_at, run, variant) of a month: four weekly digests to the
    consenting 60 %, daily wake-up and abandoned-cart triggers, order service mails."""
    rng = random.Random(seed)
    consenting = [c for c in range(1, customers + 1) if rng.random() < 0.6]
    for week in range(4):
        sent = datetime.combine(FIRST + timedelta(days=7 * week + 4), datetime.min.time()) + timedelta(
            hours=9
        )
        for c in consenting:
            yield "new_arrivals", f"issue:{week}", c, sent, f"na-{week}", "a" if c % 2 else "b"
    daily = max(1, customers // 200)
    for day in range(DAYS):
        sent = datetime.combine(FIRST + timedelta(days=day), datetime.min.time()) + timedelta(hours=8)
        for campaign in ("wakeup", "abandoned_cart", "order_shipped", "order_delivered"):
            for i in range(daily):
                c = rng.randint(1, customers)
                yield campaign, f"{campaign}:{day}:{i}", c, sent, f"{campaign}-{day}", ""


def outcome(rng: random.Random, sent: datetime) -> dict[str, Any]:
    """What became of one mail (rates of a healthy list)."""
    row: dict[str, Any] = {
        "delivered_at": None,
        "bounced_at": None,
        "bounce": None,
        "opened_at": None,
        "machine_opened_at": None,
        "clicked_at": None,
        "unsubscribed_at": None,
    }
    fate = rng.random()
    if fate < 0.015:
        row.update(bounced_at=sent + timedelta(seconds=20), bounce=3 if fate < 0.008 else 1)
        return row
    row["delivered_at"] = sent + timedelta(seconds=15)
    if rng.random() < 0.3:
        row["machine_opened_at"] = sent + timedelta(seconds=30)
    if rng.random() < 0.25:
        row["opened_at"] = sent + timedelta(minutes=rng.randint(5, 2000))
        if rng.random() < 0.16:
            row["clicked_at"] = row["opened_at"] + timedelta(minutes=rng.randint(0, 30))
    if rng.random() < 0.002:
        row["unsubscribed_at"] = sent + timedelta(hours=3)
    return row


def seed(state: Engine, shop: Engine, customers: int) -> tuple[int, int, int]:
    """Fill the state and shop DBs; returns (mails, click events, orders)."""
    rng = random.Random(11)
    ledger_rows, result_rows, click_rows, orders = [], [], [], []
    counts = [0, 0, 0]

    def flush() -> None:
        with state.begin() as conn:
            conn.execute(insert(send_ledger), ledger_rows)
            conn.execute(insert(mail_results), result_rows)
            if click_rows:
                conn.execute(insert(provider_events), click_rows)
        if orders:
            with shop.begin() as conn:
                conn.execute(insert(shop_schema.orders), orders)
        ledger_rows.clear(), result_rows.clear(), click_rows.clear(), orders.clear()

    for campaign, occasion, customer, sent, run, variant in month_of_mails(customers):
        key = message_key(campaign, occasion, customer)
        ledger_rows.append(
            {
                "campaign": campaign,
                "occasion_key": occasion,
                "customer_id": customer,
                "message_key": key,
                "status": "sent",
                "run_id": run,
                "attempts": 1,
                "created_at": sent,
                "updated_at": sent,
            }
        )
        fate = outcome(rng, sent)
        result_rows.append(
            {
                "message_key": key,
                "campaign": campaign,
                "customer_id": customer,
                "test_variant": variant or None,
                "language": "ru" if customer % 10 else "en",
                "queued_at": sent,
                "sent_at": sent,
                "run_id": run,
                **fate,
            }
        )
        counts[0] += 1
        if fate["clicked_at"] is not None:
            for n in range(1 + (rng.random() < 0.3)):
                at = fate["clicked_at"] + timedelta(minutes=n)
                click_rows.append(
                    {
                        "sg_event_id": f"c{counts[1]}",
                        "event": "click",
                        "email": f"c{customer}@x.ru",
                        "message_key": key,
                        "campaign": campaign,
                        "customer_id": customer,
                        "occurred_at": at,
                        "received_at": at,
                        "url": rng.choice(LINKS),
                    }
                )
                counts[1] += 1
            if rng.random() < 0.08:
                counts[2] += 1
                orders.append(
                    {
                        "id": counts[2],
                        "customer_id": customer,
                        "status": "delivered",
                        "currency": "RUB",
                        "created_at": fate["clicked_at"] + timedelta(hours=rng.randint(1, 100)),
                        "total": rng.randint(500, 20_000),
                    }
                )
        if len(ledger_rows) >= CHUNK:
            flush()
    flush()
    return counts[0], counts[1], counts[2]


def timed(name: str, action):
    start = time.perf_counter()
    value = action()
    print(f"  {name:<58} {time.perf_counter() - start:6.2f} s", flush=True)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--state-url", default=None, help="state DB (default: a fresh SQLite file)")
    parser.add_argument("--keep", default=None, help="folder to keep (and reuse) the seeded SQLite files in")
    parser.add_argument(
        "--reuse", action="store_true", help="the DBs are seeded already: only time the reports"
    )
    args = parser.parse_args(argv)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-results-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = args.state_url or f"sqlite:///{folder / 'state.sqlite'}"
    shop_path = folder / "shop.sqlite"
    reuse = args.reuse or (args.keep and shop_path.exists() and args.state_url is None)
    state = state_db.upgrade(url)
    shop = get_engine(f"sqlite:///{shop_path}")
    if not reuse:
        shop_schema.metadata.create_all(shop)
        start = time.perf_counter()
        mails, clicks, orders = seed(state, shop, args.customers)
        print(
            f"seeded {mails:,} mails, {clicks:,} click events, {orders:,} orders in "
            f"{time.perf_counter() - start:.0f} s ({state.dialect.name})"
        )
    last = FIRST + timedelta(days=DAYS - 1)
    print(f"a month ({FIRST} – {last}) of a {args.customers:,}-customer shop:")
    report = timed(
        "report new_arrivals per variant (+ links, revenue after click)",
        lambda: report_for_days(state, shop, "new_arrivals", FIRST, last, TZ, by=("variant",)),
    )
    timed(
        "report new_arrivals per language",
        lambda: report_for_days(state, shop, "new_arrivals", FIRST, last, TZ, by=("language",)),
    )
    timed(
        "report new_arrivals per run",
        lambda: report_for_days(state, None, "new_arrivals", FIRST, last, TZ, by=("run",)),
    )
    timed("report wakeup per variant", lambda: report_for_days(state, shop, "wakeup", FIRST, last, TZ))
    runs = [f"na-{w}" for w in range(4)] + [f"wakeup-{d}" for d in range(6)]
    timed("history: delivery, opens, clicks of the last 10 runs", lambda: engagement_of_runs(state, runs))
    total = report.total
    print(
        f"  new_arrivals: {total.sent:,} sent, {total.delivered:,} delivered, {total.opened:,} opened by "
        f"people, {total.clicked:,} clicked, {len(report.links)} links, {total.orders_after_click:,} orders "
        "after a click"
    )


if __name__ == "__main__":
    main()
