"""The local SendGrid sink's event webhook: signed `processed`/`delivered` events, late, twice, out of order.

`WebhookEmitter.emit(mail)` schedules one `processed` and one `delivered` event per personalization
of an accepted request (custom_args at the top level, like SendGrid), each due after `delay_s` plus
a random jitter up to `jitter_s` (so `delivered` often arrives before `processed`, and events of
different mails interleave); with probability `duplicate_rate` an event is delivered a second time
later (SendGrid delivers at least once). A background thread POSTs the due events in batches to
`url`, signed like SendGrid (ECDSA P-256 over timestamp + body, headers
`X-Twilio-Email-Event-Webhook-Signature`/`-Timestamp`); a batch the receiver refuses is retried.
`public_key` is what the receiver's `SHOPMAIL_SENDGRID_WEBHOOK_PUBLIC_KEY` must be.

With `engagement` on (`sink_engagement`), each mail's events are its drawn fate instead (bounces,
deferrals, opens, machine opens, clicks on its real links, spam reports; each event stamped with its
own time) and unsubscribes are one-click POSTs to the mail's `List-Unsubscribe` address; `truth`
counts what was drawn.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import random
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shopmail.devtools.sink_engagement import EngagementConfig, Truth, plan_mail

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
EVENTS = ("processed", "delivered")
MAX_BATCH = 500
UNSUBSCRIBE_ACTION = "__one_click_unsubscribe__"  # a queue item that is a POST, not an event


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where and how the sink posts events; `url` None: no events are posted."""

    url: str | None = None
    delay_s: float = 1.0
    jitter_s: float = 1.0
    duplicate_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.duplicate_rate <= 1.0:
            raise ValueError("duplicate_rate must be between 0 and 1")
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay_s and jitter_s must be >= 0")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def unique_args_of(payload: dict[str, Any], personalization: dict[str, Any]) -> dict[str, str]:
    """custom_args of a personalization over the request's top-level ones."""
    merged = dict(payload.get("custom_args") or {})
    merged.update(personalization.get("custom_args") or {})
    return {str(k): str(v) for k, v in merged.items()}


class WebhookEmitter:
    """Schedules and posts signed events (see the module docstring); start/stop with the sink."""

    def __init__(self, config: WebhookConfig | None = None, key: ec.EllipticCurvePrivateKey | None = None):
        self.config = config or WebhookConfig()
        self._key = key or ec.generate_private_key(ec.SECP256R1())
        self._rng = random.Random(self.config.seed)
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.posted = 0  # events delivered (a duplicate counts again)
        self.duplicates = 0
        self.failures = 0
        self.engagement = EngagementConfig()
        self.truth = Truth()
        self.unsubscribes = 0  # one-click POSTs answered 2xx

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid's settings page shows it (base64 DER)."""
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def configure(self, config: WebhookConfig) -> None:
        with self._lock:
            self.config = config
            self._rng.seed(config.seed)

    def emit(self, message_id: str, received_at: float, payload: dict[str, Any]) -> int:
        """Schedule the events of one accepted request; returns how many (duplicates included)."""
        config = self.config
        if not config.url:
            return 0
        scheduled = 0
        now = time.time()
        engagement = self.engagement
        with self._lock:
            for i, personalization in enumerate(payload.get("personalizations") or []):
                base = {
                    "email": personalization["to"][0]["email"],
                    "timestamp": int(received_at),
                    "sg_message_id": f"{message_id}.{i}",
                    "category": payload.get("categories") or [],
                    **unique_args_of(payload, personalization),
                }
                if engagement.enabled:
                    planned, unsubscribe = plan_mail(engagement, payload, i, self.truth)
                    events = [
                        (p.after_s, {**base, "timestamp": int(received_at + p.after_s), **p.event})
                        for p in planned
                    ]
                    if unsubscribe:
                        delay = planned[-1].after_s + 1.0
                        heapq.heappush(
                            self._queue,
                            (
                                now + config.delay_s + delay,
                                next(self._order),
                                {UNSUBSCRIBE_ACTION: unsubscribe},
                            ),
                        )
                else:
                    events = [(0.0, {**base, "event": name}) for name in EVENTS]
                for after_s, fields in events:
                    event = {**fields, "sg_event_id": secrets.token_urlsafe(16)}
                    due = now + config.delay_s + after_s + self._rng.uniform(0, config.jitter_s)
                    heapq.heappush(self._queue, (due, next(self._order), event))
                    scheduled += 1
                    if self._rng.random() < config.duplicate_rate:
                        again = due + self._rng.uniform(0, config.jitter_s + 0.5)
                        heapq.heappush(self._queue, (again, next(self._order), event))
                        self.duplicates += 1
                        scheduled += 1
        self._wake.set()
        return scheduled

    def configure_engagement(self, engagement: EngagementConfig) -> None:
        with self._lock:
            self.engagement = engagement

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sink-webhook", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _due(self) -> tuple[list[dict[str, Any]], float]:
        """Up to `MAX_BATCH` due events (in due order) and the seconds until the next one."""
        now = time.time()
        batch = []
        with self._lock:
            while self._queue and self._queue[0][0] <= now and len(batch) < MAX_BATCH:
                batch.append(heapq.heappop(self._queue)[2])
            wait = self._queue[0][0] - now if self._queue else 1.0
        return batch, max(0.01, min(wait, 1.0))

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                batch, wait = self._due()
                actions = [item[UNSUBSCRIBE_ACTION] for item in batch if UNSUBSCRIBE_ACTION in item]
                batch = [item for item in batch if UNSUBSCRIBE_ACTION not in item]
                for url in actions:
                    self._one_click(client, url)
                if batch and not self._post(client, batch):
                    with self._lock:  # refused or unreachable: SendGrid retries later
                        for event in batch:
                            heapq.heappush(self._queue, (time.time() + 1.0, next(self._order), event))
                if not batch:
                    self._wake.wait(wait)
                    self._wake.clear()

    def _one_click(self, client: httpx.Client, url: str) -> None:
        """A mail client's RFC 8058 one-click unsubscribe (retried once on a failure)."""
        for _ in range(2):
            try:
                response = client.post(
                    url,
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            except httpx.HTTPError:
                continue
            if response.status_code < 300:
                self.unsubscribes += 1
                return

    def _post(self, client: httpx.Client, events: list[dict[str, Any]]) -> bool:
        url = self.config.url
        if not url:
            return True
        body = json.dumps(events).encode()
        stamp = str(int(time.time()))
        signature = base64.b64encode(
            self._key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        ).decode()
        headers = {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: stamp, "Content-Type": "application/json"}
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.failures += 1
            log.debug("webhook post failed: %s", exc)
            return False
        if response.status_code >= 300:
            self.failures += 1
            return False
        self.posted += len(events)
        return True


def config_from_json(data: Any, base: WebhookConfig) -> WebhookConfig:
    """A `WebhookConfig` from a JSON object over `base`; ValueError on unknown or bad fields."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    known = set(WebhookConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    return replace(base, **data)
