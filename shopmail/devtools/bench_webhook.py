"""Benchmark of the SendGrid event webhook: 1,000,000 events into the real feedback app.

`python -m shopmail.devtools.bench_webhook --events 1000000 [--state-url postgresql://...]`

Seeds a state DB with the mails the events are about (sent ledger rows and their `mail_results`
facts), then posts the events as SendGrid does: signed JSON batches (`--batch` events each, ECDSA
over timestamp + body), `--clients` at once, some events twice and out of order, to the feedback app
served by uvicorn in a process of its own. Prints the time, the rate, and checks the outcome: every
event stored once, each mail's outcome folded in. `--direct` calls `record_events` without HTTP.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, func, insert, select

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from config.settings import get_settings  # noqa: E402
from shopmail.devtools.local_loop import free_port  # noqa: E402
from shopmail.state import state_db  # noqa: E402
from shopmail.state.engagement import record_mails  # noqa: E402
from shopmail.state.feedback import record_events  # noqa: E402
from shopmail.state.ledger import message_key  # noqa: E402
from shopmail.state.schema import mail_results, provider_events, send_ledger  # noqa: E402
from shopmail.web.feedback_app import SIGNATURE_HEADER, TIMESTAMP_HEADER  # noqa: E402

CAMPAIGNS = ("new_arrivals", "wakeup", "order_shipped", "abandoned_cart")
SENT_AT = datetime(2026, 11, 27, 9, 0)
LINKS = [f"https://shop.example/p/{i}?utm_source=shopmail&utm_content=related" for i in range(40)]


def seed_mails(state: Engine, mails: int) -> list[tuple[str, str, int]]:
    """`mails` sent mails (ledger + facts); returns (message_key, campaign, customer_id) each."""
    keys = []
    for i in range(mails):
        campaign = CAMPAIGNS[i % len(CAMPAIGNS)]
        keys.append((message_key(campaign, f"bench:{i}", i), campaign, i))
    for start in range(0, mails, 20_000):
        chunk = keys[start : start + 20_000]
        rows = [
            {
                "campaign": c,
                "occasion_key": f"bench:{i}",
                "customer_id": i,
                "message_key": k,
                "status": "sent",
                "run_id": "bench",
                "attempts": 1,
                "created_at": SENT_AT,
                "updated_at": SENT_AT,
            }
            for k, c, i in chunk
        ]
        with state.begin() as conn:
            conn.execute(insert(send_ledger), rows)
        facts = [
            {
                "message_key": k,
                "campaign": c,
                "customer_id": i,
                "language": "ru",
                "variant": "a" if i % 2 else "b",
            }
            for k, c, i in chunk
        ]
        record_mails(state, facts, SENT_AT)
    return keys


def mail_events(key: str, campaign: str, customer: int, rng: random.Random) -> list[dict[str, Any]]:
    """The events of one mail, as SendGrid posts them (about 3.5 on average)."""
    t = int((SENT_AT - datetime(1970, 1, 1)).total_seconds())
    base = {
        "email": f"c{customer}@example.com",
        "shopmail_key": key,
        "campaign": campaign,
        "customer_id": str(customer),
        "sg_message_id": f"m{customer}.0",
        "category": [campaign],
    }
    events = [{**base, "event": "processed", "timestamp": t}]
    fate = rng.random()
    if fate < 0.02:
        kind = "bounce" if fate < 0.01 else "blocked"
        return [
            *events,
            {
                **base,
                "event": "bounce",
                "type": kind,
                "timestamp": t + 5,
                "bounce_classification": "Invalid Address" if kind == "bounce" else "Technical Failure",
            },
        ]
    events.append({**base, "event": "delivered", "timestamp": t + 3, "response": "250 OK"})
    if rng.random() < 0.3:
        events.append({**base, "event": "open", "sg_machine_open": True, "timestamp": t + 4})
    if rng.random() < 0.6:
        events.append({**base, "event": "open", "sg_machine_open": False, "timestamp": t + 600})
        if rng.random() < 0.1:
            for n in range(1 + (rng.random() < 0.3)):
                events.append({**base, "event": "click", "url": rng.choice(LINKS), "timestamp": t + 700 + n})
    if rng.random() < 0.003:
        events.append({**base, "event": "spamreport", "timestamp": t + 900})
    return events


def event_stream(
    keys: list[tuple[str, str, int]], total: int, seed: int = 1
) -> Iterator[list[dict[str, Any]]]:
    """`total` events (3 % of them a second time) in SendGrid-like disorder, in chunks of 10,000."""
    rng = random.Random(seed)
    made = 0
    pending: list[dict[str, Any]] = []
    for key, campaign, customer in keys:
        for event in mail_events(key, campaign, customer, rng):
            event["sg_event_id"] = f"e{made}"
            pending.append(event)
            made += 1
            if rng.random() < 0.03 and made < total:
                pending.append(dict(event))
                made += 1
            if made >= total:
                break
        if len(pending) >= 10_000 or made >= total:
            rng.shuffle(pending)
            yield pending
            pending = []
        if made >= total:
            return
    if pending:
        yield pending


def _serve(port: int) -> None:
    """The feedback app in a process of its own (uvicorn, one worker), with the settings of the
    environment the benchmark set."""
    import uvicorn

    from shopmail.web.feedback_app import create_app

    app = create_app(get_settings(), max_webhook_age_s=3600)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _sign(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: stamp, "Content-Type": "application/json"}


def post_all(
    url: str, key: ec.EllipticCurvePrivateKey, batches: Iterator[list[dict[str, Any]]], clients: int
) -> int:
    """POST every batch, `clients` at a time; a refused batch is posted again (as SendGrid retries)."""
    lock = threading.Lock()
    posted = [0]

    def worker() -> None:
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    batch = next(batches, None)
                if batch is None:
                    return
                body = json.dumps(batch).encode()
                for _ in range(5):
                    response = http.post(url, content=body, headers=_sign(key, body))
                    if response.status_code == 200:
                        break
                    time.sleep(0.5)
                else:
                    raise RuntimeError(f"batch refused: {response.status_code} {response.text[:200]}")
                with lock:
                    posted[0] += len(batch)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return posted[0]


def batched(chunks: Iterator[list[dict[str, Any]]], size: int) -> Iterator[list[dict[str, Any]]]:
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per webhook POST")
    parser.add_argument("--clients", type=int, default=4, help="POSTs at once")
    parser.add_argument("--state-url", default=None, help="state DB (default: a fresh SQLite file)")
    parser.add_argument("--direct", action="store_true", help="call record_events, no HTTP")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    url = args.state_url or f"sqlite:///{folder / 'state.sqlite'}"
    state = state_db.upgrade(url)
    mails = args.events * 10 // 28 + 1
    start = time.perf_counter()
    keys = seed_mails(state, mails)
    print(f"seeded {len(keys):,} sent mails in {time.perf_counter() - start:.1f} s ({state.dialect.name})")

    stream = batched(event_stream(keys, args.events), args.batch)
    if args.direct:
        start = time.perf_counter()
        posted = 0
        for batch in stream:
            record_events(state, batch)
            posted += len(batch)
        elapsed = time.perf_counter() - start
        how = "record_events, no HTTP"
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        public = base64.b64encode(
            key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode()
        os.environ.update({"SHOPMAIL_STATE_DB_URL": url, "SHOPMAIL_SENDGRID_WEBHOOK_PUBLIC_KEY": public})
        port = free_port()
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
        server.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the feedback app did not start")
            time.sleep(0.2)
        start = time.perf_counter()
        posted = post_all(f"{base}/sendgrid/events", key, stream, args.clients)
        elapsed = time.perf_counter() - start
        server.terminate()
        how = f"signed POSTs of {args.batch:,} events, {args.clients} at once, to the feedback app (uvicorn)"

    with state.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(provider_events)).scalar_one()
        delivered = conn.execute(select(func.count(mail_results.c.delivered_at))).scalar_one()
    print(f"{posted:,} events ({how}) in {elapsed:.1f} s: {posted / elapsed:,.0f} events/s")
    print(f"stored {stored:,} unique events (the rest were duplicates); {delivered:,} mails delivered")


if __name__ == "__main__":
    main()
