"""Benchmark of the campaign pipeline on a large demo shop (`make bench`).

Times each stage of a full-base campaign (`new_arrivals`): extract, validate (GX), segment,
render, send to the local SendGrid server; and prints the ratios the design targets:
render vs a bare Jinja2 loop on the same templates, send vs a bare pooled-HTTP loop to the
same server, and peak memory. The stages call the same functions as the Prefect tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
from sqlalchemy import Engine, select

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from config.settings import PROJECT_ROOT, Settings  # noqa: E402
from segments.recommendations import (  # noqa: E402
    complementary_products,
    frequently_bought_together,
    load_accessory_map,
    popularity,
    ranked_catalogue,
)
from shopmail.campaigns import get_campaign  # noqa: E402
from shopmail.db import get_engine  # noqa: E402
from shopmail.devtools.demo_shop import generate_demo_shop  # noqa: E402
from shopmail.mailer.sendgrid_api import (
    SendGridSender,  # noqa: E402
    sendgrid_payload,  # noqa: E402
)
from shopmail.run.pipeline import (
    MailComposer,  # noqa: E402
    product_lookup,  # noqa: E402
    select_recipients,  # noqa: E402
)
from shopmail.shop import schema as shop_schema  # noqa: E402
from shopmail.shop.data_checks import run_gate  # noqa: E402
from shopmail.shop.extract import extract  # noqa: E402
from shopmail.state import state_db  # noqa: E402

CAMPAIGN = "new_arrivals"
AS_OF = date(2026, 11, 27)
API_KEY = "SG.bench"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed(results: dict[str, float], name: str):
    start = time.perf_counter()
    yield
    results[name] = time.perf_counter() - start
    print(f"  {name:<28} {results[name]:8.2f} s   (peak RSS {peak_rss_mb():,.0f} MB)", flush=True)


# --- render workers (module level so a process pool can pickle them) -----------------------

_composer: MailComposer | None = None


def _init_worker(settings: Settings, products: dict[int, dict[str, Any]]) -> None:
    global _composer
    _composer = MailComposer(get_campaign(CAMPAIGN), settings, products)


def _render_chunk(rows: list[dict[str, Any]]) -> int:
    """Compose every mail (context, three templates, unsubscribe link); return bytes produced."""
    assert _composer is not None
    return sum(len(m.html) + len(m.text) for m in map(_composer.compose, rows))


def _bare_chunk(rows: list[dict[str, Any]]) -> int:
    """The bare Jinja2 loop: the same three templates over prebuilt contexts."""
    assert _composer is not None
    renderer = _composer.renderer
    parts = [renderer._part("ru", p) for p in ("subject.j2", "body.html.j2", "body.txt.j2")]
    contexts = [{**_composer.context(r), "language": "ru"} for r in rows]
    start = time.perf_counter()
    produced = sum(len(t.render(c)) for c in contexts for t in parts)
    return int((time.perf_counter() - start) * 1e9) if produced else 0


def render_all(rows: list[dict], workers: int, settings: Settings, products: dict, fn) -> int:
    chunks = [rows[i : i + 2000] for i in range(0, len(rows), 2000)]
    if workers == 1:
        _init_worker(settings, products)
        return sum(map(fn, chunks))
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(settings, products)) as pool:
        return sum(pool.map(fn, chunks))


# --- send ------------------------------------------------------------------------------------


@contextmanager
def sink_process(port: int, slow_ms: int):
    cmd = [sys.executable, "-m", "shopmail.devtools.sendgrid_sink", "--port", str(port), "--api-key", API_KEY]
    if slow_ms:
        cmd += ["--slow-ms", str(slow_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/sink/stats", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def bare_http_loop(url: str, payloads: list[dict], concurrency: int) -> None:
    """The yardstick: pooled httpx, same payloads, same concurrency, no retries, no bookkeeping."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as client:
        bodies = [json.dumps(p, ensure_ascii=False).encode() for p in payloads]

        def post(body: bytes) -> int:
            return client.post(f"{url}/v3/mail/send", content=body, headers=headers).status_code

        with ThreadPoolExecutor(concurrency) as pool:
            statuses = list(pool.map(post, bodies))
    assert all(s == 202 for s in statuses), "the sink refused bare requests"


# --- recommendations ---------------------------------------------------------------------------


def recommendations_stage(engine: Engine, as_of: date, t: dict[str, float]) -> tuple[int, int]:
    """Frequently bought together over every order item of the shop, then complementary picks
    (bought together, then accessories by config/accessories.toml) for each customer's latest order.

    Times the two computations silently (`recs: ...` in `t`, printed as one row after the table, so
    the other rows, peak memory included, are as without it); returns (order items, orders picked for).
    """
    o, i = shop_schema.orders, shop_schema.order_items
    with engine.connect() as conn:
        orders = pd.read_sql_query(select(o.c.id, o.c.customer_id, o.c.status, o.c.created_at), conn)
        items = pd.read_sql_query(select(i.c.order_id, i.c.product_id, i.c.qty), conn)
        products = pd.read_sql_query(select(shop_schema.products), conn)
    orders["created_at"] = pd.to_datetime(orders["created_at"])
    products[["in_stock", "overstock"]] = products[["in_stock", "overstock"]].fillna(False).astype(bool)

    start = time.perf_counter()
    fbt = frequently_bought_together(items, orders)
    t["recs: bought together"] = time.perf_counter() - start

    start = time.perf_counter()
    since = pd.Timestamp(as_of) - pd.Timedelta(days=90)
    catalogue = ranked_catalogue(products, popularity(orders, items, since))
    valid = orders.loc[orders["status"] != "cancelled", ["id", "customer_id", "created_at"]]
    latest = valid.sort_values(["customer_id", "created_at", "id"])
    latest = latest.drop_duplicates("customer_id", keep="last")
    latest = latest.rename(columns={"id": "key"})[["customer_id", "key"]]
    bought = items.loc[items["order_id"].isin(latest["key"]), ["order_id", "product_id"]]
    bought = bought.rename(columns={"order_id": "key"})
    owned = items[["order_id", "product_id"]].merge(
        valid[["id", "customer_id"]], left_on="order_id", right_on="id"
    )
    owned = owned.merge(latest, on="customer_id")[["key", "product_id"]]
    complementary_products(bought, products, catalogue, owned, fbt, load_accessory_map(), 4)
    t["recs: complementary picks"] = time.perf_counter() - start
    return len(items), len(latest)


# --- segments ----------------------------------------------------------------------------------


def segments_stage(
    engine: Engine, frames: dict[str, pd.DataFrame], as_of: date, tz: ZoneInfo, t: dict[str, float]
) -> str:
    """Customer features (spend, RFM, bought brands / categories) over every order and order item of
    the shop, then every segment of config/segments.toml. Timed silently like the recommendations (a
    row after the table); returns the data size for that row."""
    from segments.customer_features import customer_features
    from segments.rules import load_segments

    o, i = shop_schema.orders, shop_schema.order_items
    with engine.connect() as conn:
        columns = (o.c.id, o.c.customer_id, o.c.status, o.c.created_at, o.c.total)
        orders = pd.read_sql_query(select(*columns), conn)
        items = pd.read_sql_query(select(i.c.order_id, i.c.product_id, i.c.qty), conn)
    orders["created_at"] = pd.to_datetime(orders["created_at"])
    orders["total"] = orders["total"].astype("float64")
    data = {**frames, "orders": orders, "order_items": items}  # customers and products as extracted
    start = time.perf_counter()
    features = customer_features(data, as_of, tz)
    t["segments: features"] = time.perf_counter() - start
    catalogue = load_segments()
    start = time.perf_counter()
    for name in catalogue.names():
        catalogue.mask(name, features)
    t["segments: rules"] = time.perf_counter() - start
    return (
        f"{len(features):,} customers / {len(orders):,} orders / {len(items):,} items, "
        f"{len(catalogue.names())} segments"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--send", type=int, default=20_000, help="mails sent over HTTP (a sample)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--slow-ms", type=int, default=0, help="latency the sink adds per request")
    args = parser.parse_args(argv)

    folder = PROJECT_ROOT / ".shopmail" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    shop = folder / f"shop_{args.customers}.sqlite"
    (folder / "state.sqlite").unlink(missing_ok=True)
    settings = Settings(
        shop_db_url=f"sqlite:///{shop}", state_db_url=f"sqlite:///{folder / 'state.sqlite'}", data_dir=folder
    )
    t: dict[str, float] = {}
    print(f"Shopmail benchmark: {args.customers:,} customers, campaign {CAMPAIGN}, {args.workers} workers")
    if not shop.exists():
        with timed(t, "generate demo shop (once)"):
            generate_demo_shop(f"sqlite:///{shop}", customers=args.customers, seed=1, today=AS_OF)

    campaign = get_campaign(CAMPAIGN)
    with timed(t, "extract"):
        frames = extract(get_engine(settings.shop_url_resolved), campaign.datasets, AS_OF, settings.tz, 30)
    with timed(t, "validate (GX)"):
        gate = run_gate(frames)
    assert gate.success, gate.failure_text()
    with timed(t, "segment + eligibility"):
        state = state_db.upgrade(settings.state_url_resolved)
        quarantined = {int(k) for k in gate.quarantined_keys("customers")}
        selection = select_recipients(campaign, frames, AS_OF, settings, state, quarantined)
    rows = selection.eligible.to_dict("records")
    products = product_lookup(frames["products"])
    print(f"  audience {selection.audience_size:,}, eligible {len(rows):,}")

    with timed(t, "render, 1 process"):
        render_all(rows[:50_000], 1, settings, products, _render_chunk)
    bare_ns = render_all(rows[:50_000], 1, settings, products, _bare_chunk)
    t["bare jinja2, 1 process"] = bare_ns / 1e9
    print(f"  {'bare jinja2, 1 process':<28} {t['bare jinja2, 1 process']:8.2f} s")
    with timed(t, f"render all, {args.workers} processes"):
        render_all(rows, args.workers, settings, products, _render_chunk)

    sample = rows[: args.send]
    composer = MailComposer(campaign, settings, products)
    mails = [composer.compose(r) for r in sample]
    payloads = [sendgrid_payload(m) for m in mails]
    with sink_process(args.port, args.slow_ms) as url:
        with (
            timed(t, f"send {len(mails):,} (Shopmail)"),
            SendGridSender(API_KEY, url, concurrency=args.concurrency) as sender,
        ):
            results = sender.send_batch(mails)
        assert all(r.status == "sent" for r in results)
        with timed(t, f"send {len(mails):,} (bare httpx)"):
            bare_http_loop(url, payloads, args.concurrency)

    n_render = min(len(rows), 50_000)
    render_ratio = t["bare jinja2, 1 process"] / t["render, 1 process"]
    send_ratio = t[f"send {len(mails):,} (bare httpx)"] / t[f"send {len(mails):,} (Shopmail)"]
    pipeline = (
        t["extract"]
        + t["validate (GX)"]
        + t["segment + eligibility"]
        + t[f"render all, {args.workers} processes"]
    )
    batches = -(-len(rows) // settings.send_batch_size)
    print()
    print("| measure | value |\n|---|---:|")
    print(f"| customers | {args.customers:,} |")
    print(f"| eligible recipients | {len(rows):,} |")
    for name in (
        "extract",
        "validate (GX)",
        "segment + eligibility",
        f"render all, {args.workers} processes",
    ):
        print(f"| {name} | {t[name]:.1f} s |")
    print(f"| extract + validate + segment + render | {pipeline:.1f} s (target <= 120 s) |")
    print(f"| render, 1 process | {n_render / t['render, 1 process']:,.0f} mails/s |")
    print(f"| render vs bare Jinja2 | {render_ratio:.0%} (target >= 70%) |")
    print(f"| send to local server | {len(mails) / t[f'send {len(mails):,} (Shopmail)']:,.0f} mails/s |")
    print(f"| send vs bare pooled httpx | {send_ratio:.0%} (target >= 80%) |")
    print(f"| send tasks for the full base | {batches:,} (+4 per run) |")
    print(f"| peak memory (this process) | {peak_rss_mb():,.0f} MB |")
    n_items, n_picked = recommendations_stage(get_engine(settings.shop_url_resolved), AS_OF, t)
    recs = t["recs: bought together"] + t["recs: complementary picks"]
    print(
        f"| bought together over {n_items:,} order items + complementary picks for {n_picked:,} "
        f"latest orders | {recs:.1f} s |"
    )
    size = segments_stage(get_engine(settings.shop_url_resolved), frames, AS_OF, settings.tz, t)
    print(
        f"| customer features (RFM, bought categories) + every segment, {size} | "
        f"{t['segments: features']:.1f} s + {t['segments: rules']:.1f} s |"
    )


if __name__ == "__main__":
    main()
