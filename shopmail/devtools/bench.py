"""Benchmark of the campaign pipeline on a large demo shop (`make bench`).

Times each stage of a full-base campaign (`new_arrivals`): extract, validate (GX), segment,
render, send to the local SendGrid server; and prints the ratios the design targets:
render vs a bare Jinja2 loop on the same templates, send vs a bare pooled-HTTP loop to the
same server, and peak memory. The stages call the same functions as the Prefect tasks.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import re
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
from segments.send_time import ZONE_COLUMN  # noqa: E402
from shopmail.campaigns import get_campaign  # noqa: E402
from shopmail.db import get_engine  # noqa: E402
from shopmail.devtools.bench_e2e import cli_stage, end_to_end  # noqa: E402
from shopmail.devtools.demo_shop import generate_demo_shop  # noqa: E402
from shopmail.mail.links import unsubscribe_link  # noqa: E402
from shopmail.mail.personalize import html_of_text  # noqa: E402
from shopmail.mail.rendering import PARTS  # noqa: E402
from shopmail.mailer.base import OutgoingMail  # noqa: E402
from shopmail.mailer.sendgrid_api import SendGridSender, group_for_requests, merged_payload  # noqa: E402
from shopmail.run import local_prefect  # noqa: E402
from shopmail.run.composer import MailComposer  # noqa: E402
from shopmail.run.pipeline import product_lookup, records, select_recipients, sharing_order  # noqa: E402
from shopmail.shop import schema as shop_schema  # noqa: E402
from shopmail.shop.data_checks import run_gate  # noqa: E402
from shopmail.shop.extract import extract  # noqa: E402
from shopmail.state import state_db  # noqa: E402

CAMPAIGN = "new_arrivals"
AS_OF = date(2026, 11, 27)
API_KEY = "SG.bench"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sink_stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/sink/stats", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30).json()


@contextmanager
def timed(results: dict[str, float], name: str):
    start = time.perf_counter()
    yield
    results[name] = time.perf_counter() - start
    print(f"  {name:<28} {results[name]:8.2f} s   (peak RSS {peak_rss_mb():,.0f} MB)", flush=True)


# --- render workers (forked: each worker reads its slice of `_rows`, nothing is pickled per chunk) ---

_rows = pd.DataFrame()  # the eligible rows in batch order, as flows/steps.py slices them
_composer: MailComposer | None = None
CHUNK = 1000  # rows per chunk: a send batch
SEND_CHUNK = 25_000  # mails composed, then sent, at a time in the send stage


def _init_worker(settings: Settings, products: dict[int, dict[str, Any]]) -> None:
    global _composer
    _composer = MailComposer(get_campaign(CAMPAIGN), settings, products)
    _composer.compose_many(_batch(0))  # warm-up: templates compiled, caches filled


def _batch(start: int) -> list[dict[str, Any]]:
    """A send batch's rows as the send task makes them from its slice of the frame."""
    return records(_rows.iloc[start : start + CHUNK])


def _compose_chunk(start: int) -> int:
    """What a send batch does before SendGrid: shared bodies + each recipient's substitutions."""
    assert _composer is not None
    mails, _ = _composer.compose_many(_batch(start))
    return len(mails)


def _personalize_chunk(start: int) -> int:
    """The same, then every mail made final (substitutions applied, as the outbox does): bytes."""
    assert _composer is not None
    mails, _ = _composer.compose_many(_batch(start))
    return sum(len(f.subject) + len(f.html) + len(f.text) for f in (m.personalized() for m in mails))


def _bare_chunk(start: int, output: str = "text") -> int:
    """The yardstick: a bare shared-body loop. One Jinja2 render per (language, empty name parts),
    split once around its tokens; per recipient its unsubscribe link and values, then (`output`)
    `text`: the mail joined from the pieces; `mail`: the same `OutgoingMail` Shopmail hands the
    sender (envelope, headers, custom args, send time, substitutions); `values`: nothing more. No
    grouping keys, checks or proof renders."""
    assert _composer is not None
    composer, rows = _composer, _batch(start)
    tokens = {"first_name": "-T1-", "last_name": "-T2-", "id": "-T3-", "unsubscribe_url": "-T4-"}
    pattern = re.compile("(" + "|".join(re.escape(t) for t in tokens.values()) + ")")
    secret = composer.settings.unsubscribe_secret.get_secret_value()
    settings, campaign = composer.settings, composer.campaign
    bodies: dict[tuple, list[str]] = {}
    pieces_of: dict[tuple, list[list[str]]] = {}
    now = state_db.utcnow()
    produced = 0
    for row in rows:
        language = composer.renderer.language_for(row.get("language"))
        first, last = row.get("first_name") or "", row.get("last_name") or ""
        key = (language, bool(first), bool(last))
        if key not in bodies:
            context = composer.context(row)
            context["customer"] = {
                "id": tokens["id"],
                "first_name": tokens["first_name"] if first else "",
                "last_name": tokens["last_name"] if last else "",
            }
            context.update(unsubscribe_url=tokens["unsubscribe_url"], language=language)
            context["preheader"] = html_of_text(composer.renderer.preheader(language, context))
            bodies[key] = [composer.renderer._part(language, part).render(context) for part in PARTS]
            pieces_of[key] = [pattern.split(body) for body in bodies[key]]
        link = unsubscribe_link(settings.unsubscribe_url, secret, int(row["customer_id"]), CAMPAIGN)
        values = {"-T1-": first, "-T2-": last, "-T3-": str(row["customer_id"]), "-T4-": link}
        if output == "values":
            produced += len(values)
        elif output == "mail":
            subject, html, text = bodies[key]
            mail = OutgoingMail(
                str(row["message_key"]),
                str(row["email"]),
                subject,
                html,
                text,
                settings.sender_email,
                settings.sender_name,
                f"{first} {last}".strip(),
                settings.reply_to_resolved,
                {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                {
                    "campaign": CAMPAIGN,
                    "occasion": str(row["occasion_key"]),
                    "customer_id": str(row["customer_id"]),
                },
                campaign.categories,
                composer.scheduled(row.get(ZONE_COLUMN), now),
                campaign.click_tracking,
                values,
            )
            produced += len(mail.substitutions)
        else:
            for pieces in pieces_of[key]:
                joined = list(pieces)
                joined[1::2] = [values[t] for t in pieces[1::2]]
                produced += len("".join(joined))
    return produced


def _bare_mails_chunk(start: int) -> int:
    """The bare loop making the same `OutgoingMail`s as Shopmail (what the SendGrid path needs)."""
    return _bare_chunk(start, "mail")


def _bare_values_chunk(start: int) -> int:
    """The bare loop making the values only (no mail objects)."""
    return _bare_chunk(start, "values")


def _start(_: int) -> float:
    time.sleep(0.3)  # holds a worker while the others start: every worker is up before timing
    return time.perf_counter()


def timed_pool(rows: pd.DataFrame, workers: int, settings: Settings, products: dict, fn) -> float:
    """Seconds `workers` forked processes take for `fn` over every chunk of `rows`, start-up and
    warm-up excluded (the pool is up and every worker warm before the clock starts)."""
    global _rows
    _rows = rows
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        workers, context, initializer=_init_worker, initargs=(settings, products)
    ) as pool:
        list(pool.map(_start, range(workers)))
        start = time.perf_counter()
        list(pool.map(fn, range(0, len(rows), CHUNK)))
        return time.perf_counter() - start


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


def send_in_chunks(
    composer: MailComposer, rows: pd.DataFrame, sender: SendGridSender, url: str | None, concurrency: int
) -> tuple[float, float, int, int]:
    """Seconds Shopmail's sender takes for the rows' mails, seconds the bare loop takes for the same
    requests (`url`; 0 without), mails sent, and Shopmail's requests counted at the server (`url`);
    composing is not timed. The two take turns going first, chunk by chunk: neither always meets a
    server still busy with the other's requests."""
    ours = bare = 0.0
    sent = requests = 0
    for n, start in enumerate(range(0, len(rows), SEND_CHUNK)):
        chunk = records(rows.iloc[start : start + SEND_CHUNK])
        mails = [
            m for i in range(0, len(chunk), CHUNK) for m in composer.compose_many(chunk[i : i + CHUNK])[0]
        ]
        payloads = [merged_payload(g) for g in group_for_requests(mails)] if url is not None else []
        for side in ("ours", "bare") if n % 2 == 0 else ("bare", "ours"):
            if side == "bare" and url is not None:
                began = time.perf_counter()
                bare_http_loop(url, payloads, concurrency)
                bare += time.perf_counter() - began
            elif side == "ours":
                before = sink_stats(url)["requests"] if url is not None else 0
                began = time.perf_counter()
                results = sender.send_batch(mails)
                ours += time.perf_counter() - began
                assert all(r.status == "sent" for r in results)
                sent += len(results)
                requests += sink_stats(url)["requests"] - before if url is not None else 0
    return ours, bare, sent, requests


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
    parser.add_argument("--send", type=int, default=200_000, help="mails sent over HTTP (a sample)")
    parser.add_argument("--render-sample", type=int, default=200_000, help="rows of the side-by-side render")
    parser.add_argument("--slow-sample", type=int, default=100_000, help="mails sent at --slow-ms")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--slow-ms", type=int, default=150, help="SendGrid round trip the sink simulates")
    parser.add_argument("--skip-e2e", action="store_true", help="no end-to-end stage (PostgreSQL, Prefect)")
    parser.add_argument("--skip-cli", action="store_true", help="no command-line stage")
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
    with timed(t, "batch order"):
        rows = sharing_order(selection.eligible).reset_index(drop=True)  # as flows/steps.py batches them
    products = product_lookup(frames["products"])
    print(f"  audience {selection.audience_size:,}, eligible {len(rows):,}")

    # The forked workers stand for Prefect's process workers, which hold only their batch: freezing the
    # parent's heap keeps them from traversing it on every full collection and copying it page by
    # page (the Python docs' advice before fork); measured side by side, so both sides have it.
    gc.freeze()
    # render: 1 and 2 processes side by side on the same rows, twice each, best of two
    sample = rows.iloc[: args.render_sample]
    one = min(timed_pool(sample, 1, settings, products, _compose_chunk) for _ in range(2))
    two = min(timed_pool(sample, args.workers, settings, products, _compose_chunk) for _ in range(2))
    ours = min(timed_pool(sample, 1, settings, products, _personalize_chunk) for _ in range(2))
    bare = min(timed_pool(sample, 1, settings, products, _bare_chunk) for _ in range(2))
    bare_values = min(timed_pool(sample, 1, settings, products, _bare_values_chunk) for _ in range(2))
    bare_mails = min(timed_pool(sample, 1, settings, products, _bare_mails_chunk) for _ in range(2))
    t["render, 1 process"], t[f"render, {args.workers} processes"] = one, two
    for name, value in (("compose, 1 process", one), (f"compose, {args.workers} processes", two)):
        print(f"  {name:<28} {value:8.2f} s   ({len(sample):,} mails)")
    print(f"  {'compose + substitute, 1 pr.':<28} {ours:8.2f} s   bare shared-body loop {bare:.2f} s")
    print(f"  {'bare loop, same mails':<28} {bare_mails:8.2f} s   values only {bare_values:.2f} s")
    with timed(t, f"render all, {args.workers} processes"):
        t["render all (pool)"] = timed_pool(rows, args.workers, settings, products, _compose_chunk)

    # send: the same mails through Shopmail's sender and through a bare pooled-httpx loop, 25,000 at a
    # time (composed untimed, as the batches of a run would hand them over; the sample is never held
    # whole, so it does not inflate the peak memory)
    composer = MailComposer(campaign, settings, products)
    sent_rows = rows.iloc[: args.send]
    tries = []  # twice, each side's better try (as the render ratios), a fresh server each time
    for _ in range(2):
        with (
            sink_process(args.port, 0) as url,
            SendGridSender(API_KEY, url, concurrency=args.concurrency) as sender,
        ):
            tries.append(send_in_chunks(composer, sent_rows, sender, url, args.concurrency))
    ours_s, bare_s = min(x[0] for x in tries), min(x[1] for x in tries)
    sent, requests = tries[0][2], tries[0][3]
    slow_rows = rows.iloc[: args.slow_sample]
    with (
        sink_process(args.port, args.slow_ms) as url,
        SendGridSender(API_KEY, url, concurrency=args.concurrency) as sender,
    ):
        slow_s, _, _, _ = send_in_chunks(composer, slow_rows, sender, None, args.concurrency)
    t[f"send {sent:,} (Shopmail)"], t[f"send {sent:,} (bare httpx)"] = ours_s, bare_s
    t[f"send {len(slow_rows):,} at {args.slow_ms} ms"] = slow_s
    for name in (
        f"send {sent:,} (Shopmail)",
        f"send {sent:,} (bare httpx)",
        f"send {len(slow_rows):,} at {args.slow_ms} ms",
    ):
        print(f"  {name:<28} {t[name]:8.2f} s   (peak RSS {peak_rss_mb():,.0f} MB)")

    e2e = None
    if not args.skip_e2e:  # the real flow, as `shopmail run` runs it (bench_e2e.py)
        with sink_process(args.port, 0) as url:
            e2e = end_to_end(args.customers, CAMPAIGN, AS_OF, url, folder / "e2e")
        local_prefect.stop(folder / "e2e")
    cli = {} if args.skip_cli else cli_stage(folder / "cli")

    n = len(sample)
    sent_s = t[f"send {sent:,} (Shopmail)"]
    send_ratio = t[f"send {sent:,} (bare httpx)"] / sent_s
    slow_1m = t[f"send {len(slow_rows):,} at {args.slow_ms} ms"] * 1_000_000 / max(1, len(slow_rows))
    stages = ("extract", "validate (GX)", "segment + eligibility", "batch order", "render all (pool)")
    pipeline = sum(t[name] for name in stages)
    batches = -(-len(rows) // settings.send_batch_size)
    print()
    print("| measure | value |\n|---|---:|")
    print(f"| customers | {args.customers:,} |")
    print(f"| eligible recipients | {len(rows):,} |")
    for name in ("extract", "validate (GX)", "segment + eligibility", "batch order"):
        print(f"| {name} | {t[name]:.1f} s |")
    render_all = t["render all (pool)"]
    print(f"| batch rows + render/personalize all, {args.workers} processes | {render_all:.1f} s |")
    print(f"| **extract + validate + segment + render** | **{pipeline:.1f} s** (target <= 45 s at 1M) |")
    print(f"| compose, 1 process | {n / one:,.0f} mails/s |")
    print(f"| compose, {args.workers} processes | {n / two:,.0f} mails/s |")
    print(f"| speed-up, {args.workers} vs 1 process (side by side) | {one / two:.2f}x (target >= 1.8x) |")
    print(
        f"| compose vs bare shared-body loop making the same mails | {bare_mails / one:.0%} (target >= 70%) |"
    )
    print(f"| compose vs bare loop making the values only (no mail objects) | {bare_values / one:.0%} |")
    print(f"| compose + substitute (outbox path) vs bare loop joining the mails | {bare / ours:.0%} |")
    print(
        f"| SendGrid requests for {sent:,} mails (counted at the server) | {requests:,} "
        f"(1 per {sent / max(1, requests):,.0f}; target <= 1 per 500) |"
    )
    print(f"| send to local server | {sent / sent_s:,.0f} mails/s (target >= 7,500) |")
    print(f"| send vs bare pooled httpx | {send_ratio:.0%} (target >= 80%) |")
    print(f"| send 1M mails at {args.slow_ms} ms per request (from {len(slow_rows):,}) | {slow_1m:.0f} s |")
    print(f"| send tasks for the full base | {batches:,} (+4 per run) |")
    if e2e is not None:
        bare_rate = sent / t[f"send {sent:,} (bare httpx)"]
        print(
            f"| **end to end: the real flow (threads, Prefect server, PostgreSQL, local SendGrid server)** "
            f"| **{e2e.rate:,.0f} mails/s** in the send phase, {e2e.rate / bare_rate:.0%} of the bare loop "
            "(target >= 40%) |"
        )
        print(
            f"| end to end: {e2e.mails:,} mails, extract to last accepted mail | {e2e.run_s:.0f} s "
            f"(target <= 120 s at 1M); {e2e.requests:,} requests, {e2e.task_runs:,} Prefect task runs |"
        )
    for name, seconds in cli.items():
        print(
            f"| {name}, best of 5 | {seconds:.1f} s |"
            if "first" not in name
            else f"| {name} | {seconds:.1f} s |"
        )
    print(f"| peak memory (this process) | {peak_rss_mb():,.0f} MB (target <= 2,048 MB) |")
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
