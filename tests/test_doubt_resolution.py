"""Doubt resolution piece by piece, against the local SendGrid server:

- `accept_stall`: the server stores the mail and answers only after the client's read timeout: a real
  `shopmail run` leaves the mails `in_doubt`, sends each exactly once, and the signed webhook's events
  then prove them `sent`;
- the Email Activity API under the server's 6 requests/min limit and lag: bulk lookups, 429 waited
  out, a lagging key unconfirmed until the lag passes;
- the webhook emitter alone: signed (verified with the sink's key), late, duplicated and out of order;
  the state DB keeps each `sg_event_id` once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.settings import Settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.devtools.sink_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookConfig, WebhookEmitter
from shopmail.mailer import sendgrid_api
from shopmail.mailer.sendgrid_api import ACTIVITY_KEYS_PER_QUERY, SendGridSender
from shopmail.mailer.throttle import RateLimiter
from shopmail.state import ledger, state_db
from shopmail.state.feedback import record_events, webhook_authentic, webhook_verifier
from shopmail.state.schema import provider_events
from shopmail.web.feedback_app import running_app, running_feedback_app

AS_OF = date(2026, 11, 23)
ROOT = Path(__file__).resolve().parent.parent


def _payload(keys: list[str]) -> dict:
    """One v3 request with a personalization per key (custom_args like shopmail's)."""
    return {
        "from": {"email": "news@mailings.test"},
        "subject": "Sale",
        "content": [{"type": "text/plain", "value": "Hello"}],
        "personalizations": [
            {
                "to": [{"email": f"c{i}@example.com"}],
                "custom_args": {"shopmail_key": key, "customer_id": str(i)},
            }
            for i, key in enumerate(keys)
        ],
    }


# --- accept-then-stall in a real run ------------------------------------------------------------


@pytest.mark.flow
def test_accept_stall_leaves_mails_in_doubt_sent_once_then_proved_by_the_webhook(
    prefect_harness, settings: Settings
) -> None:
    from prefect.settings import get_current_settings

    generate_demo_shop(settings.shop_url_resolved, customers=80, seed=5, today=AS_OF)
    state = state_db.upgrade(settings.state_url_resolved)
    with running_sink() as sink:
        app_settings = settings.model_copy(
            update={"sendgrid_webhook_public_key": SecretStr(sink.store.webhook.public_key)}
        )
        with running_feedback_app(app_settings, state) as app:
            # events come 4 s after acceptance: well after the client gave up (1 s) and marked the doubt
            hook = WebhookConfig(f"{app.url}/sendgrid/events", delay_s=4, jitter_s=0.5, duplicate_rate=0.3)
            sink.store.webhook.configure(hook)
            faults = {"rate_accept_stall": 1.0, "timeout_s": 2.5, "seed": 1}
            assert httpx.put(f"{sink.url}/sink/faults", json=faults, headers=sink.auth).status_code == 200
            env = {
                **os.environ,
                "SHOPMAIL_DATA_DIR": str(settings.data_dir),
                "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
                "SHOPMAIL_SENDGRID_HOST": sink.url,
                "SHOPMAIL_SENDGRID_API_KEY": "SG.test-key",
                "SHOPMAIL_SENDGRID_TIMEOUT_S": "1",
                "SHOPMAIL_SENDGRID_ACTIVITY_LOOKUP": "false",
                "SHOPMAIL_SEND_BATCH_SIZE": "10",
                "SHOPMAIL_MAX_SEND_ERRORS": "1000",
                "SHOPMAIL_DOUBT_GRACE_MINUTES": "30",
                "SHOPMAIL_SENDER_EMAIL": "news@mailings.test",
                "PREFECT_API_URL": str(get_current_settings().api.url),
            }
            run = subprocess.run(
                [sys.executable, "-m", "shopmail.cli", "run", "sale", "--as-of", AS_OF.isoformat(), "--yes"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                timeout=300,
            )
            assert run.returncode in (0, 1), run.stdout.decode(errors="replace")[-2000:]
            requests = sink.store.requests
            keys = sink.store.key_counts()
            [run_details] = [r["details"] for r in state_db.recent_runs(state, "sale")]
            deadline = time.monotonic() + 30
            while ledger.counts_by_status(state, "sale").get(ledger.IN_DOUBT) and time.monotonic() < deadline:
                time.sleep(0.2)
            resolved = ledger.counts_by_status(state, "sale")

    assert keys and max(keys.values()) == 1  # every stalled request went out once: never resent
    assert requests == len(sink.store.messages)  # no second request for any of them
    assert set(sink.store.doubt_keys) == set(keys)
    # the run itself recorded every mail as in doubt (none as sent: no answer ever came)
    outcomes = run_details["outcomes"]
    assert outcomes.get(ledger.IN_DOUBT) == len(keys) and not outcomes.get("sent"), run_details
    assert resolved.get(ledger.IN_DOUBT, 0) == 0 and resolved["sent"] == len(keys)  # proved by events


# --- Email Activity API under the rate limit and lag ---------------------------------------------


class _FakeClock:
    def __init__(self) -> None:
        self.t, self.slept = 0.0, []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_activity_lookup_is_bulk_paced_waits_out_429_and_respects_the_lag(monkeypatch) -> None:
    pace = _FakeClock()  # the client's own 6/min pacer, on a fake clock (real waits would take minutes)
    monkeypatch.setattr(
        sendgrid_api, "_ACTIVITY_PACE", RateLimiter(6 / 60, burst=6, clock=pace.now, sleep=pace.sleep)
    )
    keys = [f"key-{i:04d}" for i in range(250)]
    with running_sink() as sink:
        feedback = {"activity_rate_per_min": 6, "activity_lag_s": 2.0}
        assert httpx.patch(f"{sink.url}/sink/feedback", json=feedback, headers=sink.auth).status_code == 200
        assert (
            httpx.post(f"{sink.url}/v3/mail/send", json=_payload(keys), headers=sink.auth).status_code == 202
        )
        lookups: list[httpx.Request] = []

        def count(request: httpx.Request) -> None:
            if request.url.path == "/v3/messages":
                lookups.append(request)

        waits: list[float] = []
        client = httpx.Client(event_hooks={"request": [count]})
        sender = SendGridSender(
            "SG.test-key", host=sink.url, client=client, sleep=waits.append, max_rate_limit_wait_s=90
        )
        queries = -(-len(keys) // ACTIVITY_KEYS_PER_QUERY)  # 3

        addresses = {key: f"c{i}@example.com" for i, key in enumerate(keys)}  # as in _payload
        # within the lag: the server does not show the mails yet -> nothing confirmed (not "refused")
        assert sender.confirm(keys, addresses) == {}
        assert len(lookups) == queries
        time.sleep(2.2)
        # the answer names no key (SendGrid's message list has no unique_args): mapped by address
        found = sender.confirm(keys, addresses)
        assert set(found) == set(keys) and len(lookups) == 2 * queries  # 250 keys, 3 requests
        assert len(set(found.values())) == len(keys)  # one msg_id per personalization
        assert pace.slept == []  # 6 lookups: within the burst

        # the 7th lookup of the minute: the pacer waits ~10 s, the server (its window is real time)
        # answers 429 with X-RateLimit-Reset, which the client waits out, then gives up: unconfirmed
        assert sender.confirm(keys[:1], addresses) == {}
        assert pace.slept and 9 <= sum(pace.slept) <= 31
        assert len(lookups) == 2 * queries + 3  # three attempts
        assert len(waits) == 2 and all(0 < w <= 61 for w in waits)  # until the reset, not a guess

        # a key accepted just now lags behind the older ones; it shares keys[0]'s address, so the two
        # go in separate queries (one answer entry per address names its key)
        assert httpx.patch(
            f"{sink.url}/sink/feedback", json={"activity_rate_per_min": 0}, headers=sink.auth
        ).is_success
        assert (
            httpx.post(f"{sink.url}/v3/mail/send", json=_payload(["late"]), headers=sink.auth).status_code
            == 202
        )
        both = {"late": "c0@example.com", keys[0]: "c0@example.com"}
        before = len(lookups)
        assert set(sender.confirm(["late", keys[0]], both)) == {keys[0]}
        assert len(lookups) == before + 2
        time.sleep(2.2)
        found = sender.confirm(["late", keys[0]], both)
        assert set(found) == {"late", keys[0]} and found["late"] != found[keys[0]]
        # SendGrid's message list names no custom args
        answer = httpx.get(
            f"{sink.url}/v3/messages",
            params={"query": f'to_email="{addresses[keys[0]]}"', "limit": 10},
            headers=sink.auth,
        ).json()["messages"]
        assert answer and all("unique_args" not in m for m in answer)
        # without an address a key is looked up alone
        before = len(lookups)
        assert set(sender.confirm(keys[:3])) == set(keys[:3]) and len(lookups) == before + 3
        client.close()


def test_address_chunks_keep_addresses_distinct_and_unknown_ones_alone() -> None:
    keys = [f"k{i}" for i in range(250)]
    addresses = {k: f"a{i % 120}@x.test" for i, k in enumerate(keys)}  # 130 addresses shared by two keys
    addresses.pop("k5")
    chunks = sendgrid_api.address_chunks(keys, addresses)
    assert sorted(k for c in chunks for k in c) == sorted(keys)
    assert ["k5"] in chunks
    for chunk in chunks:
        assert len(chunk) <= ACTIVITY_KEYS_PER_QUERY
        assert len({addresses.get(k, k).lower() for k in chunk}) == len(chunk)
    assert len(chunks) == 4  # 249 addressed keys in 3 queries (no address twice), 1 alone


# --- the webhook emitter alone ------------------------------------------------------------------


def test_webhook_emitter_signs_duplicates_reorders_and_the_state_db_dedupes(settings: Settings) -> None:
    state = state_db.upgrade(settings.state_url_resolved)
    emitter = WebhookEmitter()
    verifier = webhook_verifier(emitter.public_key)
    arrived: list[dict] = []
    authentic: list[bool] = []
    lock = threading.Lock()

    async def receive(request: Request) -> Response:
        body = await request.body()
        ok = webhook_authentic(
            verifier, body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        )
        tampered = webhook_authentic(  # the same signature over a changed body
            verifier,
            body + b" ",
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
        )
        events = json.loads(body)
        with lock:
            authentic.append(ok and not tampered)
            arrived.extend(events)
        record_events(state, events)
        return Response(status_code=200 if ok else 403)

    app = Starlette(routes=[Route("/events", receive, methods=["POST"])])
    keys = [f"k{i:02d}" for i in range(40)]
    with running_app(app, name="webhook-receiver") as url:
        emitter.configure(
            WebhookConfig(f"{url}/events", delay_s=0.1, jitter_s=0.8, duplicate_rate=0.4, seed=7)
        )
        emitter.start()
        try:
            scheduled = emitter.emit("msg1", time.time(), _payload(keys[:20]))
            time.sleep(0.3)
            scheduled += emitter.emit("msg2", time.time(), _payload(keys[20:]))
            deadline = time.monotonic() + 20
            while (emitter.pending() or emitter.posted < scheduled) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            emitter.stop()

    assert authentic and all(authentic) and emitter.failures == 0
    assert len(arrived) == scheduled == 2 * len(keys) + emitter.duplicates and emitter.duplicates > 0
    ids = Counter(e["sg_event_id"] for e in arrived)
    assert len(ids) == 2 * len(keys) and sum(n - 1 for n in ids.values()) == emitter.duplicates
    assert {e["shopmail_key"] for e in arrived} == set(keys)  # custom_args at the top level
    # out of order: some `delivered` arrives before its `processed`, and the two mails interleave
    first = {}
    for i, e in enumerate(arrived):
        first.setdefault((e["shopmail_key"], e["event"]), i)
    assert any(first[(k, "delivered")] < first[(k, "processed")] for k in keys)
    positions = [i for i, e in enumerate(arrived) if e["sg_message_id"].startswith("msg2")]
    assert min(positions) < max(i for i, e in enumerate(arrived) if e["sg_message_id"].startswith("msg1"))
    with state.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(provider_events)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(provider_events.c.sg_event_id)))).scalar_one()
    assert stored == distinct == 2 * len(keys)
