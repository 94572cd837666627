"""Redaction: what must never leave a run in an error, a log line, an artifact or a stored summary.

`redact(text)` hides
- `token=` values (unsubscribe and password-reset links): a reader must not unsubscribe a customer
  or take over an account;
- personal coupon codes (`BDAY-7KQ2-M9XD-4TZP` -> `BDAY-…`): a reader must not spend a coupon;
- URL passwords (`postgresql://shop:***@db/shop`), whatever they contain;
- the literal values of the configured secrets (`register_secrets(secret_values(settings))`): API
  key, HMAC keys, DB passwords (also URL-encoded). Values shorter than `MIN_SECRET_CHARS` are
  not searched for (they would mangle ordinary text).

Every sink goes through it: the send ledger's `error` column, run summaries, Prefect artifacts and
approval requests, the errors a batch reports, and every log record of a process that called
`install_log_redaction` (the flows, the send task, the CLI, the feedback app).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from config.settings import Settings

MIN_SECRET_CHARS = 6
_TOKEN = re.compile(r"(token=)[^&#\s\"'<>]+")
_COUPON = re.compile(r"\b([A-Z0-9]{1,8})-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}\b")
# scheme://user:PASSWORD@ -- the password may hold a raw '@' (up to the last '@' before a '/')
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)[^\s/]*@")

_registered: frozenset[str] = frozenset()


def redact_tokens(text: str) -> str:
    """Hide `token=` values (the whole value up to the next `&`, `#`, quote or blank, whatever its
    alphabet) and personal coupon codes (only their prefix stays)."""
    return _COUPON.sub(r"\1-…", _TOKEN.sub(r"\1…", text))


def redact_url_passwords(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://user:***@host`."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _password_forms(url: str) -> set[str]:
    """The password of a DB URL as written and decoded (empty if none or unparseable)."""
    if "@" not in url:  # no user info, no password (and no SQLAlchemy import for the CLI's start)
        return set()
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        return set()
    if not password:
        return set()
    return {password, quote(password, safe=""), quote_plus(password)}


def secret_values(settings: Settings) -> frozenset[str]:
    """The secret strings of `settings` that must never be printed."""
    found: set[str] = set()
    for field in ("sendgrid_api_key", "unsubscribe_secret", "coupon_secret"):
        value = getattr(settings, field)
        if value is not None:
            found.add(value.get_secret_value())
    for url in (settings.shop_url_resolved, settings.state_url_resolved):
        found |= _password_forms(url)
    return frozenset(v for v in found if len(v.strip()) >= MIN_SECRET_CHARS)


def register_secrets(values: Iterable[str]) -> None:
    """Add literal secrets that `redact` hides in this process (the flows register the settings')."""
    global _registered
    _registered = _registered | {v for v in values if len(v.strip()) >= MIN_SECRET_CHARS}


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with tokens, coupon codes, URL passwords and `secrets` (default: the registered ones)
    hidden."""
    if not text:
        return text
    for secret in sorted(_registered if secrets is None else set(secrets), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return redact_tokens(redact_url_passwords(text))


def redact_data(value: Any) -> Any:
    """A JSON-like value with every string in it redacted (run-summary details)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


def redact_log_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place. Only a record that carries something to hide is rewritten: its
    message (and traceback, folded into the message) becomes the redacted text."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it itself
        return record
    full = message
    if record.exc_info and record.exc_info[0] is not None:
        full += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.stack_info:
        full += "\n" + record.stack_info
    clean = redact(full)
    if clean != full:
        record.msg, record.args = clean, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
    return record


_installed = False


def install_log_redaction(settings: Settings | None = None) -> None:
    """Redact every log record this process creates from now on (idempotent); with `settings`, also
    register their secrets. A log record factory, so it covers every logger and handler, including
    the Prefect API handler that ships flow and task logs to the server."""
    global _installed
    if settings is not None:
        register_secrets(secret_values(settings))
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_log_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True
