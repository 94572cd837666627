"""A local SendGrid-compatible `/v3/mail/send` server for dev, tests and benchmarks.

It validates payloads like SendGrid (same status codes and `{"errors": [...]}` bodies for the
main rules) and stores accepted mails in a `SinkStore`. Endpoints:

- `POST /v3/mail/send`, `GET /v3/messages?query=...` (Email Activity lookup): Bearer auth;
- `GET|DELETE /sink/messages`: the stored requests as JSON / forget them;
- `GET|PUT|PATCH /sink/faults`: injected 429/500/503/timeouts/dropped connections (`Faults`);
- `GET /sink/stats`: request, fault and per-`shopmail_key` counts;
- `GET /sink`, `GET /sink/messages/{id}`: HTML pages to read the mails.

`SinkStore.fail_next` scripts failure statuses; they come before the random faults.
Run it: `python -m shopmail.devtools.sendgrid_sink --port 8025 --rate-503 0.1`, or `serve(...)`;
in tests: `with running_sink() as sink:`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from shopmail.devtools.sink_faults import (
    FAULT_KINDS,
    Faults,
    SinkServer,
    add_fault_arguments,
    drop_connection,
    faults_from_args,
    stall,
)
from shopmail.devtools.sink_page import (
    PAGE_HEADERS,
    QueryError,
    find_messages,
    render_index,
    render_message,
    unique_args,
)

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_ACTIVITY_LIMIT = 1000
MESSAGE_KEY_ARG = "shopmail_key"
RESERVED_HEADERS = frozenset(
    ["x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type"]
    + ["content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"]
)

# SendGrid's wording (https://docs.sendgrid.com/api-reference/mail-send/errors).
MSG_NO_PERSONALIZATIONS = "The personalizations field is required and must have at least one personalization."
MSG_TOO_MANY_PERSONALIZATIONS = (
    "The personalization block is limited to 1000 personalizations per API request. You have "
    "provided {n} personalizations. Please consider splitting this into multiple requests and "
    "resending your request."
)
MSG_TOO_MANY_RECIPIENTS = "There is a limit of 1000 total recipients (to + cc + bcc) per request."
MSG_NO_TO = (
    "The to array is required for all personalization objects, and must have at least one email "
    "object with a valid email address."
)
MSG_BAD_ADDRESS = "Does not contain a valid address."
MSG_DUPLICATE = (
    "Each email address in the personalization block should be unique between to, cc, and bcc. "
    "We found the first duplicate instance of [{address}] in the {field} field."
)
MSG_NO_FROM = (
    "The from object must be provided for every email send. It is an object that requires the "
    'email parameter, but may also contain a name parameter.  e.g. {"email" : '
    '"example@example.com"}  or {"email" : "example@example.com", "name" : "Example Recipient"}.'
)
MSG_BAD_FROM = "The from email does not contain a valid address."
MSG_BAD_REPLY_TO = "The reply_to email does not contain a valid address."
MSG_NO_SUBJECT = (
    "The subject is required. You can get around this requirement if you use a template with a "
    "subject defined or if every personalization has a subject defined."
)
MSG_NO_CONTENT = (
    "Unless a valid template_id is provided, the content parameter is required. There must be at "
    "least one defined content block. We typically suggest both text/plain and text/html blocks "
    "are included, but only one block is required."
)
MSG_EMPTY_CONTENT_VALUE = "The content value must be a string at least one character in length."
MSG_EMPTY_CONTENT_TYPE = "The content type must be a string at least one character in length."
MSG_CONTENT_ORDER = (
    "If present, text/plain and text/html may only be provided in this order, followed by any other content."
)
MSG_WRONG_TYPE = "Invalid type. Expected: {expected}, given: {given}."
MSG_RESERVED_HEADER = "The header {name} is reserved and cannot be set."
MSG_BAD_CATEGORIES = "The categories must be an array of non-empty strings."
MSG_TOO_LARGE = "The JSON payload you have included in your request is too large."
MSG_SEND_AT_TOO_LATE = "Scheduling more than 72 hours in advance is forbidden."
MAX_SCHEDULE_AHEAD_S = 72 * 3600

_EMAIL_RE = re.compile(r"[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}
_JSON_TYPES.update({list: "array", dict: "object", type(None): "null"})

SendGridError = dict[str, Any]


def sg_error(message: str, field: str | None = None) -> SendGridError:
    """One entry of SendGrid's `errors` list."""
    return {"message": message, "field": field, "help": None}


def _wrong_type(expected: str, value: Any, field: str) -> SendGridError:
    given = _JSON_TYPES.get(type(value), type(value).__name__)
    return sg_error(MSG_WRONG_TYPE.format(expected=expected, given=given), field)


def _valid_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 254 and bool(_EMAIL_RE.fullmatch(value))


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _check_string_map(value: Any, field: str, errors: list[SendGridError]) -> None:
    """`custom_args` / `headers`: an object whose values are all strings."""
    if value is None:
        return
    if not isinstance(value, dict):
        errors.append(_wrong_type("object", value, field))
        return
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append(_wrong_type("string", item, f"{field}.{key}"))
        elif field.endswith("headers") and key.lower() in RESERVED_HEADERS:
            errors.append(sg_error(MSG_RESERVED_HEADER.format(name=key), field))


def _check_send_at(value: Any, field: str, errors: list[SendGridError], now: float) -> None:
    """`send_at`: a unix timestamp (JSON integer), at most 72 hours ahead; past times mean now."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        errors.append(_wrong_type("integer", value, field))
    elif value > now + MAX_SCHEDULE_AHEAD_S:
        errors.append(sg_error(MSG_SEND_AT_TOO_LATE, field))


def _check_personalization(p: Any, i: int, errors: list[SendGridError], now: float | None = None) -> int:
    """Validate one personalization; return its recipient count (to + cc + bcc)."""
    field = f"personalizations.{i}"
    if not isinstance(p, dict):
        errors.append(_wrong_type("object", p, field))
        return 0
    if not isinstance(p.get("to"), list) or not p["to"]:
        errors.append(sg_error(MSG_NO_TO, f"{field}.to"))
    seen: set[str] = set()
    count = 0
    for kind in ("to", "cc", "bcc"):
        recipients = p.get(kind)
        for j, recipient in enumerate(recipients if isinstance(recipients, list) else []):
            count += 1
            address = recipient.get("email") if isinstance(recipient, dict) else None
            if not _valid_email(address):
                errors.append(sg_error(MSG_BAD_ADDRESS, f"{field}.{kind}.{j}.email"))
            elif address.lower() in seen:
                message = MSG_DUPLICATE.format(address=address, field=f"{field}.{kind}")
                errors.append(sg_error(message, field))
            else:
                seen.add(address.lower())
    _check_string_map(p.get("custom_args"), f"{field}.custom_args", errors)
    _check_string_map(p.get("headers"), f"{field}.headers", errors)
    _check_send_at(p.get("send_at"), f"{field}.send_at", errors, time.time() if now is None else now)
    return count


def _check_content(content: Any, has_template: bool, errors: list[SendGridError]) -> None:
    if not isinstance(content, list) or not content:
        if not has_template:
            errors.append(sg_error(MSG_NO_CONTENT, "content"))
        return
    types: list[str] = []
    for i, block in enumerate(content):
        block = block if isinstance(block, dict) else {}
        if not _non_empty_str(block.get("type")):
            errors.append(sg_error(MSG_EMPTY_CONTENT_TYPE, f"content.{i}.type"))
        if not _non_empty_str(block.get("value")):
            errors.append(sg_error(MSG_EMPTY_CONTENT_VALUE, f"content.{i}.value"))
        types.append(str(block.get("type", "")).lower())
    types = [t for t in types if t != "text/x-amp-html"]  # AMP may sit between plain and html
    expected = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(expected)] != expected:
        errors.append(sg_error(MSG_CONTENT_ORDER, "content"))


def validate_mail_send(payload: Any, now: float | None = None) -> list[SendGridError]:
    """SendGrid's main `/v3/mail/send` validation rules; an empty list means valid (`now`: unix
    time the 72-hour `send_at` limit is measured from, default the clock)."""
    now = time.time() if now is None else now
    if not isinstance(payload, dict):
        return [sg_error("Bad Request")]
    errors: list[SendGridError] = []
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(sg_error(MSG_NO_PERSONALIZATIONS, "personalizations"))
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        message = MSG_TOO_MANY_PERSONALIZATIONS.format(n=len(personalizations))
        errors.append(sg_error(message, "personalizations"))
    recipients = sum(_check_personalization(p, i, errors, now) for i, p in enumerate(personalizations))
    if recipients > MAX_RECIPIENTS:
        errors.append(sg_error(MSG_TOO_MANY_RECIPIENTS, "personalizations"))

    sender = payload.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        errors.append(sg_error(MSG_NO_FROM, "from.email"))
    elif not _valid_email(sender["email"]):
        errors.append(sg_error(MSG_BAD_FROM, "from.email"))
    reply_to = payload.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict) and _valid_email(reply_to.get("email"))):
        errors.append(sg_error(MSG_BAD_REPLY_TO, "reply_to.email"))

    has_template = _non_empty_str(payload.get("template_id"))
    every_p_subject = bool(personalizations) and all(
        isinstance(p, dict) and _non_empty_str(p.get("subject")) for p in personalizations
    )
    if not (_non_empty_str(payload.get("subject")) or every_p_subject or has_template):
        errors.append(sg_error(MSG_NO_SUBJECT, "subject"))

    _check_content(payload.get("content"), has_template, errors)
    _check_string_map(payload.get("custom_args"), "custom_args", errors)
    _check_string_map(payload.get("headers"), "headers", errors)
    _check_send_at(payload.get("send_at"), "send_at", errors, now)
    categories = payload.get("categories")
    if categories is not None and not (
        isinstance(categories, list) and all(_non_empty_str(c) for c in categories)
    ):
        errors.append(sg_error(MSG_BAD_CATEGORIES, "categories"))
    return errors


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


@dataclass
class SinkStore:
    """Thread-safe state of the sink: received mails, faults, rate-limit window, counters.

    `api_key`: the only accepted Bearer token (None: any non-empty token).
    `fail_next`: status codes answered to the next requests, one per request, before validation.
    `faults`: random faults drawn per request after `fail_next` is empty (change with `set_faults`).
    """

    api_key: str | None = None
    rate_limit: int = 1_000_000
    rate_window_s: float = 60.0
    fail_next: deque[int] = field(default_factory=deque)
    faults: Faults = field(default_factory=Faults)
    requests: int = 0
    _messages: list[ReceivedMail] = field(default_factory=list)
    _window_start: float = 0.0
    _window_count: int = 0
    _fault_counts: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.faults.seed)

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
        return mail

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


def _auth_error(request: Request, store: SinkStore) -> str | None:
    """Why the Bearer token is refused, or None when it is accepted."""
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not token:
        return "authorization required"
    if store.api_key is not None and not secrets.compare_digest(token, store.api_key):
        return MSG_INVALID_GRANT
    return None


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


def create_app(store: SinkStore | None = None) -> Starlette:
    """The ASGI app; `app.state.store` is the `SinkStore`."""
    store = store if store is not None else SinkStore()

    async def mail_send(request: Request) -> Response:
        headers = store.begin_request()
        await _slow(store)
        refused = _auth_error(request, store)
        if refused:
            return _errors(401, [sg_error(refused)], headers)
        fault = store.take_fault()
        if fault is not None:
            return await _fault_response(request, store, fault, headers)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _errors(413, [sg_error(MSG_TOO_LARGE)], headers)
        try:
            payload = json.loads(body)
        except ValueError:
            return _errors(400, [sg_error("Bad Request")], headers)
        errors = validate_mail_send(payload)
        if errors:
            return _errors(400, errors, headers)
        if _sandbox_mode(payload):
            return Response(status_code=200, headers=headers)
        mail = store.add(payload)
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
        limit_arg = request.query_params.get("limit", "10")
        limit = int(limit_arg) if limit_arg.isdigit() else 0
        if not 1 <= limit <= MAX_ACTIVITY_LIMIT:
            message = f"limit must be an integer between 1 and {MAX_ACTIVITY_LIMIT}"
            return _errors(400, [sg_error(message, "limit")], {})
        query = request.query_params.get("query", "")
        try:
            found = await run_in_threadpool(find_messages, store.messages, query, limit)
        except QueryError as exc:
            return _errors(400, [sg_error(f"invalid query: {exc}", "query")], {})
        return JSONResponse({"messages": found})

    async def list_messages(request: Request) -> Response:
        return JSONResponse([m.as_json() for m in store.messages])

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

    async def index_page(request: Request) -> Response:
        return HTMLResponse(render_index(store.messages), headers=PAGE_HEADERS)

    async def message_page(request: Request) -> Response:
        message_id = request.path_params["message_id"].split(".")[0]  # an activity msg_id works too
        mail = store.get(message_id)
        if mail is None:
            return HTMLResponse("<p>No such mail. <a href='/sink'>All mails</a></p>", status_code=404)
        return HTMLResponse(render_message(mail), headers=PAGE_HEADERS)

    app = Starlette(
        routes=[
            Route("/v3/mail/send", mail_send, methods=["POST"]),
            Route("/v3/messages", email_activity, methods=["GET"]),
            Route("/sink/messages", list_messages, methods=["GET"]),
            Route("/sink/messages", clear_messages, methods=["DELETE"]),
            Route("/sink/messages/{message_id}", message_page, methods=["GET"]),
            Route("/sink/faults", faults, methods=["GET", "PUT", "PATCH"]),
            Route("/sink/stats", stats, methods=["GET"]),
            Route("/sink", index_page, methods=["GET"]),
        ]
    )
    app.state.store = store
    return app


@dataclass(frozen=True, slots=True)
class RunningSink:
    """A sink serving in a background thread."""

    url: str
    store: SinkStore
    stop: Callable[[], None]


def run_sink_in_thread(
    store: SinkStore | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, SinkStore, Callable[[], None]]:
    """Serve the sink on `host` (a free port by default); return (base_url, store, stop)."""
    store = store if store is not None else SinkStore()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = SinkServer(create_app(store), log_level="warning", access_log=False)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sendgrid-sink", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the SendGrid sink did not start")
        time.sleep(0.005)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return f"http://{host}:{port}", store, stop


@contextmanager
def running_sink(store: SinkStore | None = None) -> Iterator[RunningSink]:
    """`with running_sink() as sink:` -> `sink.url`, `sink.store`; stopped on exit."""
    url, store, stop = run_sink_in_thread(store)
    try:
        yield RunningSink(url, store, stop)
    finally:
        stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    api_key: str | None = None,
    faults: Faults | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve a fresh sink in the foreground until Ctrl+C (loopback by default).

    `api_key`: the only accepted Bearer token (None: any); `faults`: injected failures.
    """
    store = SinkStore(api_key=api_key, faults=faults or Faults())
    SinkServer(create_app(store), host=host, port=port, log_level=log_level).run()


def main(argv: list[str] | None = None) -> None:
    """Serve the sink in the foreground (dev): `python -m shopmail.devtools.sendgrid_sink --help`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--api-key", default=None, help="only accept this key (default: any)")
    add_fault_arguments(parser)
    args = parser.parse_args(argv)
    try:
        faults = faults_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    serve(args.host, args.port, args.api_key, faults)


if __name__ == "__main__":
    main()
