"""A local SendGrid-compatible `/v3/mail/send` server for dev, tests and benchmarks.

It validates payloads with SendGrid's documented rules (`sink_rules`: same status codes and
`{"errors": [...]}` bodies) and stores accepted mails in a `SinkStore`. Endpoints:

- `POST /v3/mail/send`, `GET /v3/messages?query=...` (Email Activity lookup): Bearer auth;
- `GET|DELETE /sink/messages`: the stored requests as JSON, as sent / forget them;
- `GET /sink/mails?message_id=&offset=&limit=`: the mails recipients get, one per personalization,
  with its `substitutions` applied (`sink_page.delivered_mail`); oldest first, at most 1,000 a page;
- `GET|PUT|PATCH /sink/faults`: injected 429/500/503/timeouts/dropped connections, accepted mails
  whose answer is lost (`accept_drop`, `accept_stall`) (`Faults`);
- `GET|PATCH /sink/feedback`: the signed event webhook (`sink_webhook`: url, delay, jitter,
  duplicates; its public key) and the Email Activity API's rate limit and lag;
- `GET|PATCH|DELETE /sink/engagement`: what recipients do (`sink_engagement`: true rates per
  campaign, variant and segment, delays) and the ground truth of what they did (DELETE: forget it);
- `GET /sink/stats`: request, fault and per-`shopmail_key` counts;
- `GET /sink`, `GET /sink/messages/{id}[.{index}]`: HTML pages to read the mails (recipient `index`'s).

A request is stored once, as parsed (one shared body for its up to 1,000 personalizations); each
recipient's mail is made when read, so storing costs nothing per personalization.

`/sink/*` answers only requests carrying the store's `access_key` (the API key, else a random key
printed at start): `Authorization: Bearer <key>`, or in a browser the cookie `/sink?key=<key>` sets.
Every request must name the sink in its Host header (127.0.0.1, localhost, the listening interface):
a DNS-rebinding page cannot reach it.

`SinkStore.fail_next` scripts failure statuses; they come before the random faults.
Run it: `python -m shopmail.devtools.sendgrid_sink --port 8025 --rate-503 0.1`, or `serve(...)`;
in tests: `with running_sink() as sink:`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import random
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shopmail.devtools.sink_engagement import EngagementConfig, engagement_from_json
from shopmail.devtools.sink_faults import (
    ACCEPT_FAULTS,
    FAULT_KINDS,
    Faults,
    SinkServer,
    add_fault_arguments,
    drop_connection,
    faults_from_args,
    stall,
)
from shopmail.devtools.sink_page import (
    LOGIN_HEADERS,
    PAGE_HEADERS,
    QueryError,
    delivered_mail,
    find_messages,
    public_activity_row,
    render_index,
    render_login,
    render_message,
    unique_args,
)
from shopmail.devtools.sink_rules import (  # noqa: F401 - re-exported: the sink's validation API
    MAX_PERSONALIZATIONS,
    MAX_RECIPIENTS,
    MSG_SEND_AT_TOO_LATE,
    SendGridError,
    sg_error,
    validate_mail_send,
)
from shopmail.devtools.sink_webhook import WebhookConfig, WebhookEmitter, config_from_json, unique_args_of

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_ACTIVITY_LIMIT = 1000
MAX_MAILS_PAGE = 1000
MESSAGE_KEY_ARG = "shopmail_key"
MSG_TOO_LARGE = "The JSON payload you have included in your request is too large."
MSG_INVALID_UTF8 = "Invalid UTF8 in request"
MSG_UNKNOWN_HOST = "Misdirected Request: this server answers only to its own host name"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
PAGE_COOKIE = "shopmail_sink"
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One accepted `/v3/mail/send` request."""

    message_id: str
    received_at: float
    payload: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "received_at": self.received_at,
            "payload": self.payload,
        }

    @property
    def count(self) -> int:
        """How many mails (personalizations) the request holds."""
        return len(self.payload["personalizations"])

    def mail(self, index: int) -> dict[str, Any]:
        """The mail of personalization `index` as its recipients get it (substitutions applied)."""
        return delivered_mail(self, index)

    def mails(self) -> Iterator[dict[str, Any]]:
        """Every recipient's mail, in personalization order, made one at a time."""
        return (delivered_mail(self, i) for i in range(self.count))


@dataclass
class SinkStore:
    """Thread-safe state of the sink: received mails, faults, rate-limit window, counters.

    `api_key`: the only accepted Bearer token of `/v3/*` (None: any non-empty token).
    `page_key`: opens `/sink/*` when no `api_key` is configured (random per sink; see `access_key`).
    `fail_next`: status codes answered to the next requests, one per request, before validation.
    `faults`: random faults drawn per request after `fail_next` is empty (change with `set_faults`).
    `webhook`: posts signed events of accepted mails (off until its config has a url).
    `activity_rate_per_min`: Email Activity requests allowed per rolling minute (0: no limit; SendGrid:
    6), then 429; `activity_lag_s`: a mail shows in the Activity API only this long after acceptance.
    """

    api_key: str | None = None
    page_key: str = field(default_factory=lambda: "sink-" + secrets.token_urlsafe(18), repr=False)
    rate_limit: int = 1_000_000
    rate_window_s: float = 60.0
    fail_next: deque[int] = field(default_factory=deque)
    faults: Faults = field(default_factory=Faults)
    requests: int = 0
    webhook: WebhookEmitter = field(default_factory=WebhookEmitter, repr=False)
    activity_rate_per_min: int = 0
    activity_lag_s: float = 0.0
    # mail-send requests being answered right now, and by client port (crash tests find the process
    # sending, to kill it mid-request); the ports of answered requests, in order
    in_flight: int = 0
    ports_in_flight: dict[int, int] = field(default_factory=dict)
    answered_ports: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    _activity_calls: deque[float] = field(default_factory=deque, repr=False)
    _doubt_keys: Counter[str] = field(default_factory=Counter, repr=False)
    _messages: list[ReceivedMail] = field(default_factory=list)
    _window_start: float = 0.0
    _window_count: int = 0
    _fault_counts: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.faults.seed)

    @property
    def access_key(self) -> str:
        """The key that opens `/sink/*` (mails, faults, stats): the API key, else `page_key`."""
        return self.api_key or self.page_key

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def get(self, message_id: str) -> ReceivedMail | None:
        """The stored request with this `X-Message-Id`, if any."""
        with self._lock:
            return next((m for m in self._messages if m.message_id == message_id), None)

    def add(self, payload: dict[str, Any]) -> ReceivedMail:
        mail = ReceivedMail(secrets.token_urlsafe(16)[:22], time.time(), payload)
        with self._lock:
            self._messages.append(mail)
        self.webhook.emit(mail.message_id, mail.received_at, payload)
        return mail

    def record_doubt(self, payload: dict[str, Any]) -> None:
        """Count the keys of a request accepted under an accept-then-drop/stall fault."""
        keys = [unique_args_of(payload, p).get(MESSAGE_KEY_ARG) for p in payload["personalizations"]]
        with self._lock:
            self._doubt_keys.update(k for k in keys if k)

    @property
    def doubt_keys(self) -> Counter[str]:
        """Keys accepted by requests whose answer the client never got (accept_drop/accept_stall)."""
        with self._lock:
            return Counter(self._doubt_keys)

    def activity_allowed(self) -> float | None:
        """None if an Email Activity request may go now, else the epoch second the window frees up."""
        if self.activity_rate_per_min <= 0:
            return None
        now = time.time()
        with self._lock:
            while self._activity_calls and self._activity_calls[0] <= now - 60:
                self._activity_calls.popleft()
            if len(self._activity_calls) >= self.activity_rate_per_min:
                return self._activity_calls[0] + 60
            self._activity_calls.append(now)
        return None

    def visible_messages(self) -> list[ReceivedMail]:
        """The mails the Activity API shows now (accepted at least `activity_lag_s` ago)."""
        cutoff = time.time() - self.activity_lag_s
        return [m for m in self.messages if m.received_at <= cutoff]

    def clear(self) -> int:
        """Forget every received mail; return how many there were."""
        with self._lock:
            count = len(self._messages)
            self._messages.clear()
            return count

    def reset(self) -> None:
        """Forget mails, scripted failures and counters; restart the fault draws from the seed
        (configuration is kept)."""
        with self._lock:
            self._messages.clear()
            self.fail_next.clear()
            self._fault_counts.clear()
            self._doubt_keys.clear()
            self._activity_calls.clear()
            self.webhook.truth.clear()
            self.requests = self._window_count = 0
            self._window_start = 0.0
            self._rng.seed(self.faults.seed)

    def script(self, statuses: Iterable[int]) -> None:
        """Answer the next requests with these statuses (e.g. `[503, 429]`)."""
        with self._lock:
            self.fail_next.extend(statuses)

    def set_faults(self, faults: Faults) -> None:
        """Switch to these random faults, reseeding the draws from `faults.seed`."""
        with self._lock:
            self.faults = faults
            self._rng.seed(faults.seed)

    def begin_request(self) -> dict[str, str]:
        """Count a request in the current rate-limit window; return the rate-limit headers."""
        with self._lock:
            self.requests += 1
            start = math.floor(time.time() / self.rate_window_s) * self.rate_window_s
            if start != self._window_start:
                self._window_start, self._window_count = start, 0
            self._window_count += 1
            return {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(self.rate_limit - self._window_count, 0)),
                "X-RateLimit-Reset": str(math.ceil(start + self.rate_window_s)),
            }

    def next_fault(self) -> int | None:
        """The scripted status for this request, else 429 when over the rate limit, else None."""
        with self._lock:
            if self.fail_next:
                return self.fail_next.popleft()
            return 429 if self._window_count > self.rate_limit else None

    def take_fault(self) -> str | None:
        """This request's fault, counted: a scripted status (`"503"`), else `"rate_limit"` when
        over the window, else a random draw from `faults` (`"429"`, ..., `"timeout"`, `"drop"`)."""
        with self._lock:
            if self.fail_next:
                kind: str | None = str(self.fail_next.popleft())
            elif self._window_count > self.rate_limit:
                kind = "rate_limit"
            elif any(self.faults.rates):
                kind = self.faults.pick(self._rng.random())
            else:
                kind = None
            if kind is not None:
                self._fault_counts["429" if kind == "rate_limit" else kind] += 1
            return kind

    def key_counts(self, arg: str = MESSAGE_KEY_ARG) -> Counter[str]:
        """How often each `custom_args[arg]` value was accepted, over all stored personalizations."""
        return Counter(
            key
            for mail in self.messages
            for p in mail.payload["personalizations"]
            if (key := unique_args(mail.payload, p).get(arg)) is not None
        )

    def stats(self) -> dict[str, Any]:
        """Counters for `/sink/stats`; `duplicate_keys`: keys accepted more than once."""
        with self._lock:
            mails, requests = list(self._messages), self.requests
            faults = {kind: 0 for kind in FAULT_KINDS} | dict(self._fault_counts)
        keys = self.key_counts()
        return {
            "requests": requests,
            "accepted_requests": len(mails),
            "personalizations": sum(len(m.payload["personalizations"]) for m in mails),
            "faults": faults,
            "keys": len(keys),
            "duplicate_keys": sum(1 for count in keys.values() if count > 1),
            "doubt_keys": len(self.doubt_keys),
            "in_flight": self.in_flight,
            # when the first and the last accepted request arrived (unix time): a run's send phase
            "first_received_at": mails[0].received_at if mails else None,
            "last_received_at": mails[-1].received_at if mails else None,
            "webhook_events_posted": self.webhook.posted,
            "webhook_events_pending": self.webhook.pending(),
        }


def _errors(status: int, errors: list[SendGridError], headers: dict[str, str]) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


_FAULT_MESSAGES = {
    429: "too many requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
MSG_INVALID_GRANT = "The provided authorization grant is invalid, expired, or revoked"


def _sandbox_mode(payload: dict[str, Any]) -> bool:
    settings = payload.get("mail_settings")
    sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def _auth_error(request: Request, store: SinkStore) -> str | None:
    """Why the Bearer token of a `/v3/*` request is refused, or None when it is accepted."""
    token = _bearer(request)
    if not token:
        return "authorization required"
    if store.api_key is not None and not _same(token, store.api_key):
        return MSG_INVALID_GRANT
    return None


def page_token(key: str) -> str:
    """The cookie value that opens the HTML pages: derived from the access key, never the key itself."""
    return hmac.new(key.encode(), b"shopmail-sendgrid-sink-pages", hashlib.sha256).hexdigest()


def sink_access(request: Request, store: SinkStore) -> bool:
    """Whether a `/sink/*` request carries the access key: `Authorization: Bearer <key>` (any method),
    or, for reads only, the page cookie that `GET /sink?key=<key>` sets (so a cross-site form can
    never delete mails or change faults with it; the cookie is SameSite=Strict anyway)."""
    key = store.access_key
    token = _bearer(request)
    if token:
        return _same(token, key)
    cookie = request.cookies.get(PAGE_COOKIE)
    return request.method in ("GET", "HEAD") and cookie is not None and _same(cookie, page_token(key))


def _split_host(value: str) -> tuple[str, int | None]:
    """`name:port` of a Host header, lowercased (`[::1]:8025` works); port 80 when absent, None when
    not a number."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name, port = name + "]", rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = value.partition(":")
    if not port:
        return name, 80
    return name, int(port) if port.isdigit() else None


def allowed_host_names(host: str = "127.0.0.1", extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names the sink answers to: loopback, the interface it listens on, and `extra`."""
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return frozenset(n.lower() for n in (*LOOPBACK_NAMES, bracketed, *extra))


class HostGuard:
    """ASGI middleware: answer 421 to a request whose Host header is not the sink's own name and port.

    Defeats DNS rebinding: a web page whose own host name is made to resolve to 127.0.0.1 reaches
    the sink's port, but with its name in the Host header."""

    def __init__(self, app: ASGIApp, names: frozenset[str], port: int | None) -> None:
        self.app, self.names, self.port = app, names, port

    def allows(self, host: str) -> bool:
        name, port = _split_host(host)
        return name in self.names and port is not None and (self.port is None or port == self.port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not self.allows(host):
                refusal = JSONResponse({"errors": [sg_error(MSG_UNKNOWN_HOST)]}, status_code=421)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _fault_response(request: Request, store: SinkStore, kind: str, headers: dict[str, str]) -> Response:
    """The answer to a faulted `/v3/mail/send` request (nothing is read or stored)."""
    if kind == "drop":
        return await drop_connection(request)
    if kind == "timeout":
        await stall(request, store.faults.timeout_s)
        kind = "503"
    if kind == "rate_limit":  # over the window: reset at the window's end
        return _errors(429, [sg_error(_FAULT_MESSAGES[429])], {**headers, "X-RateLimit-Remaining": "0"})
    status = int(kind)
    if status == 429:
        reset = math.ceil(time.time() + store.faults.retry_after_s)
        headers = {**headers, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    return _errors(status, [sg_error(_FAULT_MESSAGES.get(status, f"HTTP {status}"))], headers)


async def _slow(store: SinkStore) -> None:
    if store.faults.slow_ms > 0:
        await asyncio.sleep(store.faults.slow_ms / 1000)


def _paging(request: Request, default_limit: int) -> tuple[int, int]:
    """`offset` (>= 0) and `limit` (1 to `MAX_MAILS_PAGE`) of a paged `/sink/*` request."""
    offset_arg = request.query_params.get("offset", "0")
    limit_arg = request.query_params.get("limit", str(default_limit))
    if not offset_arg.isdigit():
        raise ValueError("offset must be an integer >= 0")
    if not limit_arg.isdigit() or not 1 <= int(limit_arg) <= MAX_MAILS_PAGE:
        raise ValueError(f"limit must be an integer between 1 and {MAX_MAILS_PAGE}")
    return int(offset_arg), int(limit_arg)


def mails_page(requests: Iterable[ReceivedMail], offset: int, limit: int) -> dict[str, Any]:
    """Recipients' mails `offset` to `offset + limit` over `requests` (only those are made) and
    how many mails the requests hold in all."""
    page: list[dict[str, Any]] = []
    total = 0
    for request in requests:
        first = max(offset - total, 0)
        last = min(offset + limit - total, request.count)
        page.extend(request.mail(i) for i in range(first, last))
        total += request.count
    return {"total": total, "offset": offset, "mails": page}


def _json_body(body: bytes) -> tuple[Any, tuple[int, str] | None]:
    """The request's JSON, or the (status, message) SendGrid answers: 415 for bytes that are not
    UTF-8, 400 for anything that is not JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, (415, MSG_INVALID_UTF8)
    try:
        return json.loads(text), None
    except ValueError:
        return None, (400, "Bad Request")


def create_app(
    store: SinkStore | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    allow_hosts: Iterable[str] = (),
) -> Starlette:
    """The ASGI app; `app.state.store` is the `SinkStore`.

    Requests must name the sink in their Host header (loopback, `host`, or one of `allow_hosts`; at
    `port` when given), else 421. `/sink/*` needs the store's `access_key` (see `sink_access`)."""
    store = store if store is not None else SinkStore()

    def guarded(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            if not sink_access(request, store):
                return _errors(401, [sg_error("authorization required")], {"WWW-Authenticate": "Bearer"})
            return await handler(request)

        return checked

    async def mail_send(request: Request) -> Response:
        port = request.client.port if request.client else 0
        store.in_flight += 1  # one event loop: no lock needed
        store.ports_in_flight[port] = store.ports_in_flight.get(port, 0) + 1
        try:
            return await _mail_send(request)
        finally:
            store.in_flight -= 1
            store.ports_in_flight[port] -= 1
            if not store.ports_in_flight[port]:
                del store.ports_in_flight[port]
            store.answered_ports.append(port)

    async def _mail_send(request: Request) -> Response:
        headers = store.begin_request()
        await _slow(store)
        refused = _auth_error(request, store)
        if refused:
            return _errors(401, [sg_error(refused)], headers)
        fault = store.take_fault()
        if fault is not None and fault not in ACCEPT_FAULTS:
            return await _fault_response(request, store, fault, headers)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _errors(413, [sg_error(MSG_TOO_LARGE)], headers)
        payload, refusal = _json_body(body)
        if refusal is not None:
            return _errors(refusal[0], [sg_error(refusal[1])], headers)
        errors = validate_mail_send(payload)
        if errors:
            return _errors(400, errors, headers)
        if _sandbox_mode(payload):
            return Response(status_code=200, headers=headers)
        mail = store.add(payload)
        if fault is not None:  # accepted, but the client never hears of it
            store.record_doubt(payload)
            if fault == "accept_drop":
                return await drop_connection(request)
            await stall(request, store.faults.timeout_s)
        if store.faults.answer_delay_ms > 0:  # stored: a client dying now never hears of it
            await stall(request, store.faults.answer_delay_ms / 1000)
        return Response(status_code=202, headers={**headers, "X-Message-Id": mail.message_id})

    async def email_activity(request: Request) -> Response:
        """SendGrid's Email Activity API (`GET /v3/messages?query=...&limit=N`): one entry per
        accepted personalization matching the query, oldest first (see `sink_page.parse_query`).

        The real API needs the paid Email Activity add-on (and an API key allowed to read it);
        without it SendGrid refuses, and clients must treat the lookup as unavailable.
        """
        await _slow(store)
        refused = _auth_error(request, store)
        if refused:
            return _errors(401, [sg_error(refused)], {})
        free_at = store.activity_allowed()
        if free_at is not None:
            reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(math.ceil(free_at))}
            return _errors(429, [sg_error(_FAULT_MESSAGES[429])], reset)
        limit_arg = request.query_params.get("limit", "10")
        limit = int(limit_arg) if limit_arg.isdigit() else 0
        if not 1 <= limit <= MAX_ACTIVITY_LIMIT:
            message = f"limit must be an integer between 1 and {MAX_ACTIVITY_LIMIT}"
            return _errors(400, [sg_error(message, "limit")], {})
        query = request.query_params.get("query", "")
        try:
            found = await run_in_threadpool(find_messages, store.visible_messages(), query, limit)
        except QueryError as exc:
            return _errors(400, [sg_error(f"invalid query: {exc}", "query")], {})
        # as SendGrid answers: the query may filter on unique_args, the entries never carry them
        return JSONResponse({"messages": [public_activity_row(row) for row in found]})

    async def list_messages(request: Request) -> Response:
        return JSONResponse([m.as_json() for m in store.messages])

    async def list_mails(request: Request) -> Response:
        """The mails recipients get (`?message_id=` one request's), `offset`/`limit` paged."""
        try:
            offset, limit = _paging(request, default_limit=100)
        except ValueError as exc:
            return _errors(400, [sg_error(str(exc))], {})
        message_id = request.query_params.get("message_id")
        mails = store.messages if message_id is None else [m for m in [store.get(message_id)] if m]
        page = await run_in_threadpool(mails_page, mails, offset, limit)
        return JSONResponse(page)

    async def clear_messages(request: Request) -> Response:
        return JSONResponse({"deleted": store.clear()})

    async def faults(request: Request) -> Response:
        """GET: the fault settings; PUT: replace them (omitted fields: off/default); PATCH: merge."""
        if request.method in ("PUT", "PATCH"):
            try:
                data = json.loads(await request.body())
                base = store.faults if request.method == "PATCH" else None
                store.set_faults(Faults.from_json(data, base))
            except (ValueError, TypeError) as exc:
                return _errors(400, [sg_error(str(exc))], {})
        return JSONResponse(store.faults.as_json())

    async def stats(request: Request) -> Response:
        return JSONResponse(store.stats())

    async def feedback(request: Request) -> Response:
        """GET: webhook config + public key, activity limits; PATCH: change any of them."""
        if request.method == "PATCH":
            try:
                data = json.loads(await request.body())
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                data = dict(data)
                rate = data.pop("activity_rate_per_min", store.activity_rate_per_min)
                lag = data.pop("activity_lag_s", store.activity_lag_s)
                if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
                    raise ValueError("activity_rate_per_min must be an integer >= 0")
                if isinstance(lag, bool) or not isinstance(lag, int | float) or lag < 0:
                    raise ValueError("activity_lag_s must be a number >= 0")
                config = config_from_json(data.pop("webhook", {}), store.webhook.config)
                if data:
                    raise ValueError(f"unknown fields: {', '.join(sorted(data))}")
            except (ValueError, TypeError) as exc:
                return _errors(400, [sg_error(str(exc))], {})
            store.activity_rate_per_min, store.activity_lag_s = rate, float(lag)
            store.webhook.configure(config)
        return JSONResponse(
            {
                "webhook": store.webhook.config.as_json(),
                "webhook_public_key": store.webhook.public_key,
                "activity_rate_per_min": store.activity_rate_per_min,
                "activity_lag_s": store.activity_lag_s,
            }
        )

    async def engagement(request: Request) -> Response:
        """GET: what recipients do (config) and did (truth); PATCH: change the config; DELETE: forget
        the truth."""
        if request.method == "PATCH":
            try:
                data = json.loads(await request.body())
                store.webhook.configure_engagement(engagement_from_json(data, store.webhook.engagement))
            except (ValueError, TypeError) as exc:
                return _errors(400, [sg_error(str(exc))], {})
        if request.method == "DELETE":
            store.webhook.truth.clear()
        return JSONResponse(
            {
                "config": store.webhook.engagement.as_json(),
                "truth": store.webhook.truth.as_json(),
                "unsubscribes_posted": store.webhook.unsubscribes,
            }
        )

    async def index_page(request: Request) -> Response:
        """The mail list. `?key=<access key>` (the link `shopmail sendgrid-sink` prints, or the form
        of the login page) sets the page cookie and redirects here without the key in the URL."""
        key = request.query_params.get("key")
        if key is not None:
            if not _same(key, store.access_key):
                return HTMLResponse(render_login(wrong_key=True), status_code=401, headers=LOGIN_HEADERS)
            opened = RedirectResponse("/sink", status_code=303)
            opened.set_cookie(PAGE_COOKIE, page_token(key), path="/sink", httponly=True, samesite="strict")
            return opened
        if not sink_access(request, store):
            return HTMLResponse(render_login(), status_code=401, headers=LOGIN_HEADERS)
        return HTMLResponse(render_index(store.messages), headers=PAGE_HEADERS)

    async def message_page(request: Request) -> Response:
        if not sink_access(request, store):
            return HTMLResponse(render_login(), status_code=401, headers=LOGIN_HEADERS)
        message_id, _, index = request.path_params["message_id"].partition(".")  # an activity msg_id
        mail = store.get(message_id)
        number = int(index) if index.isdigit() else 0
        if mail is None or number >= mail.count:
            return HTMLResponse("<p>No such mail. <a href='/sink'>All mails</a></p>", status_code=404)
        return HTMLResponse(render_message(mail, number), headers=PAGE_HEADERS)

    app = Starlette(
        routes=[
            Route("/v3/mail/send", mail_send, methods=["POST"]),
            Route("/v3/messages", email_activity, methods=["GET"]),
            Route("/sink/messages", guarded(list_messages), methods=["GET"]),
            Route("/sink/messages", guarded(clear_messages), methods=["DELETE"]),
            Route("/sink/messages/{message_id}", message_page, methods=["GET"]),
            Route("/sink/mails", guarded(list_mails), methods=["GET"]),
            Route("/sink/faults", guarded(faults), methods=["GET", "PUT", "PATCH"]),
            Route("/sink/stats", guarded(stats), methods=["GET"]),
            Route("/sink/feedback", guarded(feedback), methods=["GET", "PATCH"]),
            Route("/sink/engagement", guarded(engagement), methods=["GET", "PATCH", "DELETE"]),
            Route("/sink", index_page, methods=["GET"]),
        ],
        middleware=[Middleware(HostGuard, names=allowed_host_names(host, allow_hosts), port=port)],
    )
    app.state.store = store
    return app


@dataclass(frozen=True, slots=True)
class RunningSink:
    """A sink serving in a background thread."""

    url: str
    store: SinkStore
    stop: Callable[[], None]

    @property
    def auth(self) -> dict[str, str]:
        """The header that opens `/sink/*` (the store's access key)."""
        return {"Authorization": f"Bearer {self.store.access_key}"}


def run_sink_in_thread(
    store: SinkStore | None = None, host: str = "127.0.0.1", port: int = 0, allow_hosts: Iterable[str] = ()
) -> tuple[str, SinkStore, Callable[[], None]]:
    """Serve the sink on `host` (a free port by default); return (base_url, store, stop).
    `allow_hosts`: more Host names it answers to (see `create_app`)."""
    store = store if store is not None else SinkStore()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    app = create_app(store, host=host, port=port, allow_hosts=allow_hosts)
    server = SinkServer(app, log_level="warning", access_log=False)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sendgrid-sink", daemon=True
    )
    thread.start()
    store.webhook.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the SendGrid sink did not start")
        time.sleep(0.005)

    def stop() -> None:
        store.webhook.stop()
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return f"http://{host}:{port}", store, stop


@contextmanager
def running_sink(store: SinkStore | None = None, allow_hosts: Iterable[str] = ()) -> Iterator[RunningSink]:
    """`with running_sink() as sink:` -> `sink.url`, `sink.store`, `sink.auth`; stopped on exit."""
    url, store, stop = run_sink_in_thread(store, allow_hosts=allow_hosts)
    try:
        yield RunningSink(url, store, stop)
    finally:
        stop()


def sink_banner(host: str, port: int, store: SinkStore) -> str:
    """The start-up line: where the API is and how to open the mail pages in a browser."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    base = f"http://{shown}:{port}"
    if store.api_key:
        pages = f"{base}/sink (enter the API key; scripts send Authorization: Bearer <API key>)"
    else:
        pages = f"{base}/sink?key={store.page_key} (scripts: Authorization: Bearer {store.page_key})"
    return f"SendGrid sink on {base} (set SHOPMAIL_SENDGRID_HOST); mails: {pages}"


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    api_key: str | None = None,
    faults: Faults | None = None,
    *,
    log_level: str = "info",
    allow_hosts: Iterable[str] = (),
    announce: Callable[[str], object] | None = print,
    webhook: WebhookConfig | None = None,
    activity_rate_per_min: int = 0,
    activity_lag_s: float = 0.0,
    engagement: EngagementConfig | None = None,
) -> None:
    """Serve a fresh sink in the foreground until Ctrl+C (loopback by default).

    `api_key`: the only accepted Bearer token (None: any; the pages then need a random key, shown
    by `announce`); `faults`: injected failures; `allow_hosts`: more names clients use in the Host
    header (e.g. the name of a container); everything else is refused (DNS rebinding).
    """
    store = SinkStore(api_key=api_key, faults=faults or Faults())
    if webhook is not None:
        store.webhook.configure(webhook)
    if engagement is not None:
        store.webhook.configure_engagement(engagement)
    store.activity_rate_per_min, store.activity_lag_s = activity_rate_per_min, activity_lag_s
    app = create_app(store, host=host, port=port, allow_hosts=allow_hosts)
    if announce is not None:
        announce(sink_banner(host, port, store))
        if store.webhook.config.url:
            announce(
                f"event webhook -> {store.webhook.config.url}; verification key: {store.webhook.public_key}"
            )
    store.webhook.start()
    try:
        SinkServer(app, host=host, port=port, log_level=log_level).run()
    finally:
        store.webhook.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve the sink in the foreground (dev): `python -m shopmail.devtools.sendgrid_sink --help`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--api-key", default=None, help="only accept this key (default: any)")
    parser.add_argument(
        "--allow-host", action="append", default=[], help="another Host name clients use (repeatable)"
    )
    add_fault_arguments(parser)
    parser.add_argument("--webhook-url", default=None, help="post signed events of accepted mails here")
    parser.add_argument("--webhook-delay-s", type=float, default=1.0, help="events arrive after this")
    parser.add_argument("--webhook-jitter-s", type=float, default=1.0, help="plus up to this (reorders)")
    parser.add_argument("--webhook-duplicate-rate", type=float, default=0.0, help="events posted twice")
    parser.add_argument("--activity-rate-per-min", type=int, default=0, help="Activity API limit (0: none)")
    parser.add_argument("--activity-lag-s", type=float, default=0.0, help="Activity API lag")
    parser.add_argument(
        "--engagement",
        action="store_true",
        help="recipients open, click, bounce, unsubscribe (default rates)",
    )
    args = parser.parse_args(argv)
    try:
        faults = faults_from_args(args)
        webhook = WebhookConfig(
            args.webhook_url, args.webhook_delay_s, args.webhook_jitter_s, args.webhook_duplicate_rate
        )
    except ValueError as exc:
        parser.error(str(exc))
    serve(
        args.host,
        args.port,
        args.api_key,
        faults,
        allow_hosts=args.allow_host,
        webhook=webhook,
        activity_rate_per_min=args.activity_rate_per_min,
        activity_lag_s=args.activity_lag_s,
        engagement=EngagementConfig(enabled=True) if args.engagement else None,
    )


if __name__ == "__main__":
    main()
