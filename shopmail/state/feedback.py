"""Feedback from recipients and the provider: one-click unsubscribes and SendGrid webhook events.

- `unsubscribe`: a signed unsubscribe token (see `shopmail.mail.links`) -> a `customer_unsubscribes` row
  (tokens name the customer, not the address); `unsubscribed_customers` reads them back.
- `record_events`: SendGrid event-webhook events -> `provider_events` (deduplicated on
  `sg_event_id`), address suppressions for unsubscribes, spam reports, hard bounces, drops, and each
  mail's outcome in `mail_results` (`shopmail.state.engagement`); a
  processed/delivered/deferred/bounce/dropped event proves its mail accepted: a ledger row in doubt
  with that `shopmail_key` becomes `sent`. A batch costs a handful of bulk statements, whatever its
  size (SendGrid posts up to thousands of events at once).
- `webhook_verifier` / `webhook_authentic`: the webhook's ECDSA signature and freshness check.

No web framework here; `shopmail.web.feedback_app` serves these over HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import IntegrityError

from shopmail.mail.links import verify_unsubscribe_token
from shopmail.state.engagement import bounce_kind, fold_outcomes, mark_unsubscribed
from shopmail.state.ledger import IN_DOUBT, PROOF_EVENTS, confirm_sent, insert_if_absent, retry_on_deadlock
from shopmail.state.schema import customer_unsubscribes, provider_events, send_ledger, suppressions
from shopmail.state.state_db import present_values, utcnow

log = logging.getLogger(__name__)

WEBHOOK_SOURCE = "sendgrid-webhook"
ONE_CLICK_SOURCE = "one-click"
MESSAGE_KEY_ARG = "shopmail_key"
MAX_TOKEN_CHARS = 512
MAX_URL_CHARS = 4096
DEFAULT_MAX_WEBHOOK_AGE_S = 600.0
_MAX_INT32 = 2**31 - 1
_CHUNK = 1000

# event name -> suppression reason; `bounce` only when `type == "bounce"` (hard), not "blocked".
SUPPRESSING_EVENTS = {
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
    "spamreport": "spam_report",
    "bounce": "bounce",
    "dropped": "dropped",
}


@dataclass(frozen=True, slots=True)
class EventSummary:
    """What `record_events` did with a batch: `duplicates` were already stored (or repeated in the
    batch), `invalid` lacked sg_event_id/email/event/timestamp, `suppressed` counts new suppressions,
    `confirmed` ledger rows in doubt that the batch proved accepted (now `sent`)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    suppressed: int = 0
    confirmed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# --- one-click unsubscribe -------------------------------------------------------------------


def unsubscribe(engine: Engine, secret: str, token: str | None, source: str = ONE_CLICK_SOURCE) -> bool:
    """Record the unsubscribe a signed token asks for; False for a missing or forged token.

    Idempotent: unsubscribing an unsubscribed customer again returns True and changes nothing.
    """
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    verified = verify_unsubscribe_token(secret, token)
    if verified is None:
        return False
    customer_id, campaign = verified
    if _is_unsubscribed(engine, customer_id):
        return True
    now = utcnow()
    row = {"customer_id": customer_id, "campaign": campaign[:64], "created_at": now, "source": source}
    try:
        with engine.begin() as conn:
            conn.execute(insert(customer_unsubscribes).values(**row))
    except IntegrityError:  # a concurrent request recorded it first
        if not _is_unsubscribed(engine, customer_id):
            raise
        return True
    mark_unsubscribed(engine, customer_id, campaign[:64], now)
    log.debug("unsubscribe recorded for customer %s", customer_id)
    return True


def _is_unsubscribed(engine: Engine, customer_id: int) -> bool:
    return bool(unsubscribed_customers(engine, [customer_id]))


def unsubscribed_customers(engine: Engine, customer_ids: Iterable[int]) -> set[int]:
    """The ids among `customer_ids` that unsubscribed through a signed link."""
    return present_values(engine, customer_unsubscribes.c.customer_id, (int(c) for c in customer_ids))


# --- SendGrid event webhook ------------------------------------------------------------------


def webhook_verifier(public_key: str) -> EventWebhook:
    """SendGrid's verifier for the base64 DER key its settings page shows (PEM armour tolerated).

    Raises ValueError for a key that is not an elliptic-curve public key.
    """
    lines = [line.strip() for line in public_key.strip().splitlines()]
    verifier = EventWebhook("".join(line for line in lines if line and "PUBLIC KEY" not in line))
    if not isinstance(verifier.public_key, ec.EllipticCurvePublicKey):
        raise ValueError("the SendGrid webhook verification key is not an ECDSA public key")
    return verifier


def webhook_authentic(
    verifier: EventWebhook,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    max_age_s: float = DEFAULT_MAX_WEBHOOK_AGE_S,
    now: float | None = None,
) -> bool:
    """True if `signature` signs `timestamp + body` and the timestamp is within `max_age_s` of now."""
    if not signature or not timestamp:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > max_age_s:
        return False
    try:
        return bool(verifier.verify_signature(body.decode("utf-8"), signature, timestamp))
    except ValueError:  # body not UTF-8, signature not base64
        return False


# SendGrid drop reasons that say something about the recipient address itself.
RECIPIENT_DROP_REASONS = frozenset(
    {"Bounced Address", "Unsubscribed Address", "Spam Reporting Address", "Invalid"}
)


def suppression_reason(event: Mapping[str, Any]) -> str | None:
    """The suppression an event calls for (None: none); a `blocked` bounce is not a hard bounce."""
    name = event.get("event")
    if name == "bounce" and event.get("type") != "bounce":
        return None
    if name == "dropped" and str(event.get("reason", "")) not in RECIPIENT_DROP_REASONS:
        return None  # dropped for the message or the account (spam content, quota): not the address
    return SUPPRESSING_EVENTS.get(name) if isinstance(name, str) else None


def record_events(
    engine: Engine, events: Sequence[Any], unsubscribe_prefix: str | None = None
) -> EventSummary:
    """Store a webhook batch once per `sg_event_id`, suppress the addresses it calls for and fold it
    into each mail's outcome (`mail_results`).

    New events, their suppressions and the outcomes are written in one transaction (a crash leaves
    nothing half done: SendGrid's retry of the batch does it all); a replayed event is only counted
    as a duplicate (its outcome is folded in again, which changes nothing: the earliest time of each
    event is kept). A click on the unsubscribe link (`unsubscribe_prefix`) is stored without its
    token and is no click on the mail.
    """
    received_at = utcnow()
    parsed = [_parse_event(event, received_at, unsubscribe_prefix) for event in events]
    valid = [p for p in parsed if p is not None]
    batch: dict[str, tuple[dict[str, Any], str | None]] = {}
    for row, reason in valid:
        batch.setdefault(row["sg_event_id"], (row, reason))
    outcomes = [row for row, _ in valid if row["url"] != unsubscribe_prefix or row["event"] != "click"]
    watched = {event_id for event_id, (_, reason) in batch.items() if reason}
    rows = [batch[event_id][0] for event_id in sorted(batch)]  # key order: concurrent batches never deadlock

    def write() -> tuple[int, int]:
        with engine.begin() as conn:
            stored, fresh = _insert_new(conn, rows, watched)
            suppressed = _suppress_all(
                conn, [(batch[i][0]["email"], str(batch[i][1])) for i in sorted(fresh)]
            )
            fold_outcomes(conn, outcomes)  # duplicates' too (idempotent)
        return stored, suppressed

    stored, suppressed = retry_on_deadlock(write)
    proofs: dict[str, str | None] = {}
    for row, _ in valid:  # duplicates too: a replay after a crash here still resolves the doubt
        if row["message_key"] and row["event"] in PROOF_EVENTS and proofs.get(row["message_key"]) is None:
            proofs[row["message_key"]] = row["sg_message_id"]
    confirmed = confirm_sent(engine, _doubtful_only(engine, proofs))
    summary = EventSummary(
        received=len(events),
        stored=stored,
        duplicates=len(valid) - stored,
        invalid=len(parsed) - len(valid),
        suppressed=suppressed,
        confirmed=confirmed,
    )
    log.info("webhook events: %s", summary.as_dict())
    return summary


def _doubtful_only(engine: Engine, proofs: dict[str, str | None]) -> dict[str, str | None]:
    """The proofs whose ledger row may need them (`in_doubt` or `pending`): one indexed query instead
    of an update per delivered mail (almost every proof finds its mail `sent` already)."""
    if not proofs:
        return {}
    waiting = present_values(
        engine, send_ledger.c.message_key, proofs, send_ledger.c.status.in_((IN_DOUBT, "pending"))
    )
    return {key: proofs[key] for key in sorted(waiting)}


def _parse_event(
    event: Any, received_at: datetime, unsubscribe_prefix: str | None = None
) -> tuple[dict[str, Any], str | None] | None:
    """(provider_events row, suppression reason), or None for an event we cannot store. The url of a
    click on the unsubscribe link is cut to `unsubscribe_prefix` (no token is stored)."""
    if not isinstance(event, Mapping):
        return None
    event_id = _text(event.get("sg_event_id"), 100)
    name = _text(event.get("event"), 32)
    email = _text(event.get("email"), 254)
    occurred_at = _utc(event.get("timestamp"))
    if not (event_id and name and email and "@" in email and occurred_at):
        return None
    reason = event.get("reason")
    url = _text(event.get("url"), MAX_URL_CHARS) if name == "click" else None
    if url and unsubscribe_prefix and url.startswith(unsubscribe_prefix):
        url = unsubscribe_prefix
    row = {
        "sg_event_id": event_id,
        "event": name,
        "email": email.strip().lower(),
        "message_key": _text(event.get(MESSAGE_KEY_ARG), 64),
        "campaign": _text(event.get("campaign"), 64),
        "customer_id": _int32(event.get("customer_id")),
        "sg_message_id": _text(event.get("sg_message_id"), 128),
        "occurred_at": occurred_at,
        "received_at": received_at,
        "reason": reason if isinstance(reason, str) else None,
        "url": url,
        "machine_open": event.get("sg_machine_open") is True if name == "open" else None,
        "bounce": bounce_kind(event),
    }
    return row, suppression_reason(event)


def _text(value: Any, max_chars: int) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= max_chars:
        return value
    return None


def _int32(value: Any) -> int | None:
    """An integer id (custom_args arrive as strings); None if absent or out of range."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if 0 <= number <= _MAX_INT32 else None


def _utc(value: Any) -> datetime | None:
    """Naive UTC datetime of a unix timestamp; None if absent or not a time."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return None


def _insert_new(conn: Connection, rows: list[dict[str, Any]], watched: set[str]) -> tuple[int, set[str]]:
    """Insert the rows whose `sg_event_id` is not stored yet (insert-if-absent on the unique id: also
    right under concurrent deliveries of the same events). Returns how many rows were stored and
    which of the `watched` ids are among them (the events that call for a suppression).

    SQLite counts what an insert-if-absent stored; elsewhere the ids present are read first (one
    indexed query; a RETURNING of every id costs PostgreSQL four times as much)."""
    if not rows:
        return 0, set()
    table = provider_events
    if conn.dialect.name == "sqlite":
        known = present_values(conn, table.c.sg_event_id, watched)
        stored = 0
        for start in range(0, len(rows), _CHUNK):
            stored += max(
                conn.execute(insert_if_absent(conn.dialect, table), rows[start : start + _CHUNK]).rowcount, 0
            )
        return stored, watched - known
    known = present_values(conn, table.c.sg_event_id, [r["sg_event_id"] for r in rows])
    new = [r for r in rows if r["sg_event_id"] not in known]
    for start in range(0, len(new), _CHUNK):
        conn.execute(insert_if_absent(conn.dialect, table), new[start : start + _CHUNK])
    return len(new), watched - known


def _suppress_all(conn: Connection, wanted: Sequence[tuple[str, str]]) -> int:
    """Suppress the addresses (email, reason: the first reason of an address wins) in bulk; returns
    how many were not suppressed before (a concurrent request may have won some of them meanwhile:
    insert-if-absent keeps the first)."""
    if not wanted:
        return 0
    reasons: dict[str, str] = {}
    for email, reason in wanted:
        reasons.setdefault(email.lower(), reason)
    new = sorted(set(reasons) - present_values(conn, suppressions.c.email, reasons))
    if not new:
        return 0
    now = utcnow()
    rows = [{"email": e, "reason": reasons[e], "source": WEBHOOK_SOURCE, "created_at": now} for e in new]
    conn.execute(insert_if_absent(conn.dialect, suppressions), rows)
    return len(new)
