"""Feedback from recipients and the provider: one-click unsubscribes and SendGrid webhook events.

- `unsubscribe`: a signed unsubscribe token (see `shopmail.mail.links`) -> a `customer_unsubscribes` row
  (tokens name the customer, not the address); `unsubscribed_customers` reads them back.
- `record_events`: SendGrid event-webhook events -> `provider_events` (deduplicated on
  `sg_event_id`) and address suppressions for unsubscribes, spam reports, hard bounces, drops; a
  processed/delivered/deferred/bounce/dropped event proves its mail accepted: a ledger row in doubt
  with that `shopmail_key` becomes `sent`.
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
from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError

from shopmail.mail.links import verify_unsubscribe_token
from shopmail.state.ledger import PROOF_EVENTS, confirm_sent
from shopmail.state.schema import customer_unsubscribes, provider_events
from shopmail.state.state_db import add_suppression, present_values, utcnow

log = logging.getLogger(__name__)

WEBHOOK_SOURCE = "sendgrid-webhook"
ONE_CLICK_SOURCE = "one-click"
MESSAGE_KEY_ARG = "shopmail_key"
MAX_TOKEN_CHARS = 512
DEFAULT_MAX_WEBHOOK_AGE_S = 600.0
_MAX_INT32 = 2**31 - 1

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
    row = {"customer_id": customer_id, "campaign": campaign[:64], "created_at": utcnow(), "source": source}
    try:
        with engine.begin() as conn:
            conn.execute(insert(customer_unsubscribes).values(**row))
    except IntegrityError:  # a concurrent request recorded it first
        if not _is_unsubscribed(engine, customer_id):
            raise
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


def record_events(engine: Engine, events: Sequence[Any]) -> EventSummary:
    """Store a webhook batch once per `sg_event_id` and suppress the addresses it calls for.

    Suppressions are written before the events, so a crash in between is repaired when SendGrid
    retries the batch; a replayed event is only counted as a duplicate.
    """
    received_at = utcnow()
    parsed = [_parse_event(event, received_at) for event in events]
    valid = [p for p in parsed if p is not None]
    batch: dict[str, tuple[dict[str, Any], str | None]] = {}
    for row, reason in valid:
        batch.setdefault(row["sg_event_id"], (row, reason))
    known = _stored_event_ids(engine, list(batch))
    fresh = [entry for event_id, entry in batch.items() if event_id not in known]
    suppressed = sum(_suppress(engine, row["email"], reason) for row, reason in fresh if reason)
    stored = _insert_events(engine, [row for row, _ in fresh])
    proofs: dict[str, str | None] = {}
    for row, _ in valid:  # duplicates too: a replay after a crash here still resolves the doubt
        if row["message_key"] and row["event"] in PROOF_EVENTS and proofs.get(row["message_key"]) is None:
            proofs[row["message_key"]] = row["sg_message_id"]
    confirmed = confirm_sent(engine, proofs)
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


def _parse_event(event: Any, received_at: datetime) -> tuple[dict[str, Any], str | None] | None:
    """(provider_events row, suppression reason), or None for an event we cannot store."""
    if not isinstance(event, Mapping):
        return None
    event_id = _text(event.get("sg_event_id"), 100)
    name = _text(event.get("event"), 32)
    email = _text(event.get("email"), 254)
    occurred_at = _utc(event.get("timestamp"))
    if not (event_id and name and email and "@" in email and occurred_at):
        return None
    reason = event.get("reason")
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


def _stored_event_ids(engine: Engine, event_ids: Sequence[str]) -> set[str]:
    return present_values(engine, provider_events.c.sg_event_id, event_ids)


def _suppress(engine: Engine, email: str, reason: str) -> bool:
    """Suppress an address; False if it already was (also when a concurrent request won)."""
    try:
        return add_suppression(engine, email, reason, source=WEBHOOK_SOURCE)
    except IntegrityError:
        return False


def _insert_events(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert the rows in one transaction; if a concurrent delivery stored some of them meanwhile,
    fall back to one row at a time. Returns how many rows this call stored."""
    if not rows:
        return 0
    try:
        with engine.begin() as conn:
            conn.execute(insert(provider_events), rows)
        return len(rows)
    except IntegrityError:
        return sum(_insert_event(engine, row) for row in rows)


def _insert_event(engine: Engine, row: dict[str, Any]) -> int:
    try:
        with engine.begin() as conn:
            conn.execute(insert(provider_events).values(**row))
        return 1
    except IntegrityError:
        if _stored_event_ids(engine, [row["sg_event_id"]]):
            return 0
        raise
