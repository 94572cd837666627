"""SendGrid v3 `/v3/mail/send` over a pooled `httpx.Client`, with retries and rate-limit waits."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sendgrid.helpers.mail import (
    Category,
    ClickTracking,
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    PlainTextContent,
    ReplyTo,
    SendAt,
    Substitution,
    To,
    TrackingSettings,
)

from shopmail.campaigns import SENDER_CATEGORIES
from shopmail.mailer.base import (
    OutgoingMail,
    RequestFence,
    ResultsCallback,
    Sender,
    SendResult,
    SendStatus,
    fenced,
    is_valid_email,
)
from shopmail.mailer.errors import MailerConfigurationError
from shopmail.mailer.throttle import ErrorBudget, RateLimiter, not_attempted

logger = logging.getLogger(__name__)

SEND_PATH = "/v3/mail/send"
ACTIVITY_PATH = "/v3/messages"
MAX_PERSONALIZATIONS = 1000
# SendGrid's substitution limits (API reference and errors page of /v3/mail/send)
MAX_SUBSTITUTIONS_PER_REQUEST = 10_000
MAX_SUBSTITUTIONS_PER_PERSONALIZATION = 150
MAX_SUBSTITUTION_BYTES = 10_000  # keys + values, per personalization
MESSAGE_KEY_ARG = "shopmail_key"
ACTIVITY_KEYS_PER_QUERY = 100  # `unique_args[...] IN (...)` of 100 keys: a ~5 kB URL
DEFAULT_ACTIVITY_BUDGET_S = (
    60.0  # SHOPMAIL_SENDGRID_ACTIVITY_BUDGET_S: lookups per batch, then wait for the webhook
)
ACTIVITY_LIMIT = 1000  # the API's maximum `limit`
ACTIVITY_RATE_PER_MIN = 6  # SendGrid's documented Email Activity rate limit
# transport errors raised before the request body was wholly handed to the connection: the provider
# cannot have accepted the mail (SendGrid reads the whole JSON body first), so a retry is safe.
# Every other transport error (read timeout, connection reset or closed after sending) leaves the
# request in doubt.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
_CONFIG_STATUSES = frozenset({401, 403})
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# SendGrid refuses `,` and `;` in recipient names (its limitations page: they separate addresses);
# control characters (and line/paragraph separators) never belong in a display name either.
_NAME_SPACES = dict.fromkeys((*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, ord(","), ord(";")), " ")
_NAME_ODD = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029,;]|\s\s|^\s|\s$|[^\S ]")  # what display_name changes


def display_name(name: str | None) -> str | None:
    """`name` as SendGrid takes it in `to`, `from` and `reply_to`: `,`, `;` and control characters
    become spaces, runs of spaces one; None when nothing is left (the address goes alone)."""
    if not name:
        return None
    if not _NAME_ODD.search(name):  # the usual name: nothing to clean
        return name
    cleaned = " ".join(name.translate(_NAME_SPACES).split())
    return cleaned or None


def _reply_to(value: str) -> ReplyTo:
    """`reply_to` may be `addr` or `Name <addr>` (even `Support, Team <addr>`, which an RFC 5322
    parser reads as two addresses): the name is cleaned like every display name."""
    value = value.strip()
    name, address = "", value
    if value.endswith(">") and "<" in value:
        name, _, address = value[:-1].rpartition("<")
    return ReplyTo(address.strip(), display_name(name.strip().strip('"')))


def sendgrid_payload(mail: OutgoingMail) -> dict[str, Any]:
    """The official v3 payload of one mail, built with `sendgrid.helpers.mail`.

    Per-recipient data (to, headers, custom_args with `shopmail_key`, send_at) go into the
    personalization; shared data (from, reply_to, subject, content, categories, tracking settings) at
    the top level, so mails sharing content can later be merged into one 1,000-personalization payload.
    Display names are cleaned (`display_name`): a name SendGrid refuses would reject the mail for good.
    """
    message = Mail(
        from_email=From(mail.from_email, display_name(mail.from_name)),
        to_emails=To(mail.to_email, display_name(mail.to_name)),
        subject=mail.subject,
        plain_text_content=PlainTextContent(mail.text) if mail.text else None,
        html_content=HtmlContent(mail.html) if mail.html else None,
    )
    if mail.reply_to:
        message.reply_to = _reply_to(mail.reply_to)
    for name, value in mail.headers.items():
        message.header = Header(name, value, p=0)
    for name, value in {**mail.custom_args, MESSAGE_KEY_ARG: mail.message_key}.items():
        message.custom_arg = CustomArg(name, value, p=0)
    if mail.send_at is not None:  # per personalization: mails with different times still share a request
        message.send_at = SendAt(int(mail.send_at), p=0)
    for key, value in mail.substitutions.items():  # the recipient's values in a shared body
        message.substitution = Substitution(key, value, p=0)
    categories = (*mail.categories, *(c for c in SENDER_CATEGORIES if c not in mail.categories))
    for category in reversed(categories):  # the helper prepends: keep the given order
        message.category = Category(category)
    if not mail.click_tracking:  # links carrying secrets (reset tokens) must not go through a redirect
        message.tracking_settings = TrackingSettings(click_tracking=ClickTracking(False, False))
    return message.get()


def shared_content_key(mail: OutgoingMail) -> tuple:
    """Mails with equal keys differ only in recipient data and can share one request."""
    return (
        mail.subject,
        mail.html,
        mail.text,
        mail.from_email,
        mail.from_name,
        mail.reply_to,
        mail.categories,
        mail.click_tracking,
    )


def fits_substitution_limits(mail: OutgoingMail) -> bool:
    """SendGrid's per-personalization substitution limits: at most 150, keys and values at most
    10,000 UTF-8 bytes together."""
    subs = mail.substitutions
    if len(subs) > MAX_SUBSTITUTIONS_PER_PERSONALIZATION:
        return False
    chars = sum(len(k) + len(v) for k, v in subs.items())
    if chars * 4 <= MAX_SUBSTITUTION_BYTES:  # at most 4 UTF-8 bytes a character: no need to encode
        return True
    return sum(len(k.encode()) + len(v.encode()) for k, v in subs.items()) <= MAX_SUBSTITUTION_BYTES


def group_for_requests(mails: Sequence[OutgoingMail]) -> list[list[OutgoingMail]]:
    """Split mails into request groups: shared content together, at most 1,000 personalizations and
    10,000 substitutions per request. A mail over the per-personalization substitution limits goes
    personalized (substituted here) in a request of its own."""
    groups: dict[tuple, list[OutgoingMail]] = {}
    for mail in mails:
        if mail.substitutions and not fits_substitution_limits(mail):
            mail = mail.personalized()
        groups.setdefault(shared_content_key(mail), []).append(mail)
    requests: list[list[OutgoingMail]] = []
    for group in groups.values():
        current: list[OutgoingMail] = []
        count = 0
        for mail in group:
            n = len(mail.substitutions)
            if current and (
                len(current) == MAX_PERSONALIZATIONS or count + n > MAX_SUBSTITUTIONS_PER_REQUEST
            ):
                requests.append(current)
                current, count = [], 0
            current.append(mail)
            count += n
        if current:
            requests.append(current)
    return requests


def personalization(mail: OutgoingMail) -> dict[str, Any]:
    """The recipient's part of a request, built directly (a 1,000-recipient request builds 1,000 of
    these): equal to the personalization `sendgrid_payload` builds with the official helper."""
    name = display_name(mail.to_name)
    part: dict[str, Any] = {
        "to": [{"name": name, "email": mail.to_email} if name else {"email": mail.to_email}]
    }
    if mail.send_at is not None:
        part["send_at"] = int(mail.send_at)
    if mail.headers:
        part["headers"] = mail.headers  # read only: the payload is serialised at once
    if mail.substitutions:
        part["substitutions"] = mail.substitutions
    part["custom_args"] = {**mail.custom_args, MESSAGE_KEY_ARG: mail.message_key}
    return part


def merged_payload(mails: Sequence[OutgoingMail]) -> dict[str, Any]:
    """One v3 payload for mails sharing content: one personalization per recipient (the shared part
    built once with the official helper, the personalizations directly)."""
    payload = sendgrid_payload(mails[0])
    payload["personalizations"] = [payload["personalizations"][0], *map(personalization, mails[1:])]
    return payload


@dataclass(frozen=True, slots=True)
class PayloadOutcome:
    """What became of one POST (after retries); maps onto every mail in the payload. `error_fields`:
    the payload fields SendGrid's error answer named (e.g. `from.email`,
    `personalizations.3.to.0.email`)."""

    status: SendStatus
    provider_message_id: str | None = None
    error: str | None = None
    http_status: int | None = None
    attempts: int = 1
    error_fields: tuple[str, ...] = ()


_RECIPIENT_FIELD = re.compile(r"personalizations\.(\d+)(\.|$)")


def recipient_errors(fields: Sequence[str]) -> set[int] | None:
    """The personalizations a refusal names when it is about recipients only (each field is
    `personalizations.<i>...`); None when it is about the request (From, Reply-To, content, a field
    of no personalization, or no field at all): every request would be refused alike."""
    found: set[int] = set()
    for field in fields:
        match = _RECIPIENT_FIELD.match(field)
        if match is None:
            return None
        found.add(int(match.group(1)))
    return found or None


def error_fields(response: httpx.Response) -> tuple[str, ...]:
    """The `field` of each error in SendGrid's answer (`{"errors": [{"message", "field"}]}`)."""
    try:
        errors = response.json().get("errors") or []
        return tuple(str(e["field"]) for e in errors if isinstance(e, dict) and e.get("field"))
    except (ValueError, AttributeError):
        return ()


def error_message(response: httpx.Response) -> str:
    """SendGrid's error messages (`{"errors": [{"message", "field", "help"}]}`) as one line."""
    try:
        errors = response.json().get("errors") or []
        parts = [
            f"{e.get('message')} (field: {e['field']})" if e.get("field") else str(e.get("message"))
            for e in errors
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError):
        parts = []
    detail = "; ".join(parts) or response.text[:500] or response.reason_phrase
    return f"HTTP {response.status_code}: {detail}"


class SendGridSender(Sender):
    """Sends mails in `/v3/mail/send` requests (shared content merged, up to 1,000 per request).

    Three outcomes per request. Accepted: 202/200 -> `sent` (id from `X-Message-Id`). Definitely
    not accepted: a 400 about recipients only (`personalizations.<i>` fields) -> those recipients
    `rejected` (final) and the others sent again in a request of their own; 413 -> each half of the
    request again (a single mail too large: `rejected`); any other 4xx (a bad
    From or Reply-To, a malformed payload: every request would fail alike) -> `failed`, retryable
    after the fix, counted against the run's error budget; 401/403 -> `MailerConfigurationError`
    until this sender has had a mail accepted (a bad key or unverified sender concerns the whole
    batch), `failed` after; 429 -> wait until `X-RateLimit-Reset` (capped) and retry; 5xx and
    `NOT_SENT_ERRORS` (no connection, body not sent) -> exponential backoff with jitter; waits use up
    `retries`, then `failed` (safe to retry later). In doubt: any other transport error (read timeout,
    connection dropped after the body went out) -> `in_doubt` at once, never retried (SendGrid has
    no idempotency key).
    """

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        timeout_s: float = 30.0,
        retries: int = 5,
        client: httpx.Client | None = None,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_rate_limit_wait_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
        rate_per_s: float | None = None,
        error_budget: ErrorBudget | None = None,
        activity_lookup: bool = True,
        activity_budget_s: float = DEFAULT_ACTIVITY_BUDGET_S,
    ) -> None:
        if not api_key or not api_key.strip():
            raise MailerConfigurationError("SendGrid API key is empty")
        if not host.startswith(("https://", "http://")):
            raise MailerConfigurationError(f"SendGrid host must be an http(s) URL, got {host!r}")
        self.host = host.rstrip("/")
        self.url = self.host + SEND_PATH
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_rate_limit_wait_s = max_rate_limit_wait_s
        self._sleep = sleep
        self._clock = clock
        self._headers = {
            "Authorization": f"Bearer {api_key.strip()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.concurrency = max(1, concurrency)
        self.rate = RateLimiter(rate_per_s) if rate_per_s else None
        self.error_budget = error_budget
        self.activity_lookup = activity_lookup
        self.activity_budget_s = activity_budget_s
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=timeout_s,
            limits=httpx.Limits(
                max_connections=self.concurrency + 2, max_keepalive_connections=self.concurrency + 2
            ),
        )
        self._key_verified = False  # set once SendGrid has accepted a request

    def __repr__(self) -> str:  # never shows the key
        return f"SendGridSender(host={self.host!r})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def send_batch(
        self,
        mails: Sequence[OutgoingMail],
        on_results: ResultsCallback | None = None,
        before_request: RequestFence | None = None,
    ) -> list[SendResult]:
        """Send concurrently: shared-content mails merged (<= 1,000 per request), others one each;
        `on_results` gets each request's results as soon as its outcome is known; `before_request`
        fences each request's mails (see `Sender.send_batch`)."""
        results: dict[str, SendResult] = {}
        sendable = []
        for mail in mails:
            if is_valid_email(mail.to_email):
                sendable.append(mail)
            else:
                results[mail.message_key] = SendResult(
                    mail.message_key, SendStatus.rejected, error=f"invalid address {mail.to_email!r}"
                )
        if on_results is not None and results:
            on_results(list(results.values()))
        groups = group_for_requests(sendable)

        def send(group: list[OutgoingMail]) -> list[SendResult]:
            group_results = self._send_group(group, before_request)
            if on_results is not None and group_results:
                on_results(group_results)
            return group_results

        if self.concurrency == 1 or len(groups) == 1:
            outcomes = [send(group) for group in groups]
        else:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="sendgrid") as pool:
                outcomes = list(pool.map(send, groups))
        for group_results in outcomes:
            results.update((r.message_key, r) for r in group_results)
        return [results[mail.message_key] for mail in mails if mail.message_key in results]

    def _send_group(
        self, group: list[OutgoingMail], before_request: RequestFence | None = None
    ) -> list[SendResult]:
        stop = not_attempted(self.error_budget)
        if stop:
            return [SendResult(m.message_key, SendStatus.failed, error=stop) for m in group]
        group = fenced(group, before_request)
        if not group:
            return []
        try:
            payload = merged_payload(group) if len(group) > 1 else sendgrid_payload(group[0])
        except Exception as exc:  # the helper raises assorted types for unusable input
            error = f"cannot build payload: {exc!r}"
            return [SendResult(m.message_key, SendStatus.rejected, error=error) for m in group]
        if self.rate is not None:
            self.rate.acquire(f"a SendGrid request of {len(group)} mails")
        outcome = self.send_payload(payload)
        if outcome.http_status in _CONFIG_STATUSES and not self._key_verified:
            raise MailerConfigurationError(f"SendGrid refused the credentials: {outcome.error}")
        if outcome.http_status == 413 and len(group) > 1:  # too large together: each half again
            half = len(group) // 2
            return self._send_group(group[:half], before_request) + self._send_group(
                group[half:], before_request
            )
        if outcome.status is SendStatus.rejected and outcome.http_status != 413:  # one mail too large: final
            bad = recipient_errors(outcome.error_fields)
            if bad is None:  # about the request, not a recipient: retryable once fixed
                outcome = PayloadOutcome(
                    SendStatus.failed,
                    error=f"request refused: {outcome.error}",
                    http_status=outcome.http_status,
                    attempts=outcome.attempts,
                )
            elif len(group) > 1 and len(bad) < len(group):  # only some recipients: the others again
                refused = [m for i, m in enumerate(group) if i in bad]
                rest = [m for i, m in enumerate(group) if i not in bad]
                done = [SendResult(m.message_key, SendStatus.rejected, error=outcome.error) for m in refused]
                return done + self._send_group(rest, before_request)
        if outcome.status in (SendStatus.failed, SendStatus.in_doubt) and self.error_budget is not None:
            self.error_budget.record_failure()
        return [
            SendResult(m.message_key, outcome.status, outcome.provider_message_id, outcome.error)
            for m in group
        ]

    def confirm(
        self, message_keys: Sequence[str], addresses: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Ask the Email Activity API which in-doubt mails SendGrid accepted (needs the paid add-on on
        the real service; without it nothing is confirmed and the mails wait for webhook proof).

        SendGrid's message list names no custom args: each entry is mapped back to its key by its
        `to_email` (`addresses`: key -> recipient). One `unique_args['shopmail_key'] IN (...)` query
        settles up to `ACTIVITY_KEYS_PER_QUERY` keys with distinct addresses (keys sharing an address
        go to different queries). Queries run one at a time, paced to `ACTIVITY_RATE_PER_MIN` per
        process; a 429 is waited out (until `X-RateLimit-Reset`, at most `max_rate_limit_wait_s`).
        At most `activity_budget_s` is spent: keys not looked up by then stay unconfirmed (they wait
        for the webhook or the next run), and the log says how many."""
        if not self.activity_lookup or not message_keys:
            return {}
        chunks = address_chunks(sorted(set(message_keys)), addresses or {})
        deadline = self._clock() + self.activity_budget_s
        found: dict[str, str] = {}
        for number, chunk in enumerate(chunks):
            if self._clock() > deadline:
                left = sum(len(c) for c in chunks[number:])
                logger.warning(
                    "SendGrid activity lookups stopped after %.0f s: %d doubtful mails wait for webhook "
                    "proof or the next run",
                    self.activity_budget_s,
                    left,
                )
                break
            answer = self._lookup(chunk, addresses or {})
            if answer is None:
                break
            found.update(answer)
        return found

    def _lookup(self, keys: Sequence[str], addresses: Mapping[str, str]) -> dict[str, str] | None:
        """key -> msg_id of the accepted mails among `keys` (distinct addresses, or one key); None
        when the API is unavailable."""
        quoted = ",".join(f'"{key}"' for key in keys)
        query = f"unique_args['{MESSAGE_KEY_ARG}'] IN ({quoted})"
        by_address = {addresses[k].lower(): k for k in keys if k in addresses}
        for attempt in range(1, 4):
            _ACTIVITY_PACE.acquire(f"an Email Activity lookup of {len(keys)} doubtful mails")
            try:
                response = self._client.get(
                    self.host + ACTIVITY_PATH,
                    params={"query": query, "limit": ACTIVITY_LIMIT},
                    headers=self._headers,
                    timeout=self.timeout_s,
                )
            except httpx.TransportError as exc:
                logger.warning("SendGrid activity lookup failed: %s", type(exc).__name__)
                return None
            if response.status_code == 429 and attempt < 3:
                wait = self._retry_wait(response, attempt)
                logger.warning(
                    "SendGrid activity lookup rate-limited: waiting %.1f s to look up %d doubtful mails",
                    wait,
                    len(keys),
                )
                self._sleep(wait)
                continue
            if response.status_code != 200:
                logger.warning("SendGrid activity lookup unavailable: HTTP %s", response.status_code)
                return None
            return activity_matches(response.json().get("messages") or [], keys, by_address)
        return None

    def send_payload(self, payload: dict[str, Any]) -> PayloadOutcome:
        """POST one v3 payload, retrying transient failures; never raises for HTTP outcomes."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.post(
                    self.url, content=body, headers=self._headers, timeout=self.timeout_s
                )
            except NOT_SENT_ERRORS as exc:  # no connection, body not sent: not accepted, retry
                error, status, wait = f"{type(exc).__name__}: {exc}", None, self._backoff(attempt)
            except httpx.TransportError as exc:  # the body went out, no answer came: in doubt
                error = f"in doubt: {type(exc).__name__}: {exc}"
                logger.warning("SendGrid send: %s (not retried: the mails may have been accepted)", error)
                return PayloadOutcome(SendStatus.in_doubt, error=error, attempts=attempt)
            else:
                status = response.status_code
                if status in (200, 202):
                    self._key_verified = True
                    message_id = response.headers.get("X-Message-Id")
                    return PayloadOutcome(SendStatus.sent, message_id, http_status=status, attempts=attempt)
                error = error_message(response)
                if status not in _TRANSIENT_STATUSES and status < 500:
                    fields = error_fields(response)
                    return PayloadOutcome(
                        SendStatus.rejected,
                        error=error,
                        http_status=status,
                        attempts=attempt,
                        error_fields=fields,
                    )
                wait = self._retry_wait(response, attempt)
            if attempt > self.retries:
                return PayloadOutcome(SendStatus.failed, error=error, http_status=status, attempts=attempt)
            logger.warning("SendGrid send: %s; retry %d/%d in %.2fs", error, attempt, self.retries, wait)
            self._sleep(wait)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return cap / 2 + random.uniform(0, cap / 2)

    def _retry_wait(self, response: httpx.Response, attempt: int) -> float:
        """Seconds to wait before retrying a 429/5xx response."""
        if response.status_code == 429:
            reset = _float_header(response, "X-RateLimit-Reset")
            if reset is not None:
                return min(max(reset - self._clock(), 0.0), self.max_rate_limit_wait_s)
        retry_after = _float_header(response, "Retry-After")
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_rate_limit_wait_s)
        return self._backoff(attempt)


_ACTIVITY_PACE = RateLimiter(ACTIVITY_RATE_PER_MIN / 60, burst=ACTIVITY_RATE_PER_MIN)


def address_chunks(keys: Sequence[str], addresses: Mapping[str, str]) -> list[list[str]]:
    """The keys in lookup queries: up to `ACTIVITY_KEYS_PER_QUERY` keys whose recipients differ per
    query (an answer entry then names its key by its `to_email`); a key of unknown address alone."""
    chunks: list[list[str]] = []
    seen: list[set[str]] = []
    for key in keys:
        address = addresses.get(key)
        if address is None:
            chunks.append([key])
            seen.append({"\0"})  # full: nothing joins a key of unknown address
            continue
        address = address.lower()
        for chunk, used in zip(chunks, seen, strict=True):
            if address not in used and "\0" not in used and len(chunk) < ACTIVITY_KEYS_PER_QUERY:
                chunk.append(key)
                used.add(address)
                break
        else:
            chunks.append([key])
            seen.append({address})
    return chunks


def activity_matches(
    messages: Sequence[dict[str, Any]], keys: Sequence[str], by_address: Mapping[str, str]
) -> dict[str, str]:
    """key -> msg_id for the answer's entries: by `unique_args` where an answer carries them, else by
    `to_email` (the query asked only for `keys`, whose addresses differ), else, for a one-key query,
    that key."""
    wanted = set(keys)
    found: dict[str, str] = {}
    for message in messages:
        msg_id = message.get("msg_id")
        if not msg_id:
            continue
        key = (message.get("unique_args") or {}).get(MESSAGE_KEY_ARG)
        if key is None:
            key = by_address.get(str(message.get("to_email") or "").lower())
        if key is None and len(keys) == 1:
            key = keys[0]
        if key in wanted and key not in found:
            found[key] = str(msg_id)
    return found


def _float_header(response: httpx.Response, name: str) -> float | None:
    try:
        return float(response.headers[name])
    except (KeyError, ValueError):
        return None
