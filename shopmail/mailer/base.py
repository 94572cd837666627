"""The `Sender` contract: every provider takes `OutgoingMail`s and returns one `SendResult` each."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache

from config.addresses import is_sendable


@dataclass(slots=True)  # not frozen: a frozen init costs 1.3 µs more per mail; treat it as immutable
class OutgoingMail:
    """One fully rendered mail to one recipient (treated as immutable: derive with `replace`).

    `message_key` is the ledger key (deterministic per campaign, occasion and customer):
    providers use it to make a resend of the same mail idempotent where they can.
    `custom_args` carry ids only, never personal data.
    """

    message_key: str
    to_email: str
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str = ""
    to_name: str = ""
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    # deliver at this unix time instead of now (quiet hours: segments/send_time.py); SendGrid holds the
    # mail until then (per personalization, at most 72 h ahead); the outbox records it in a header
    send_at: int | None = None
    # False: the provider must not rewrite links for click tracking (links that carry a secret, e.g. a
    # password-reset token, must reach the customer untouched); campaign files set it (`click_tracking`)
    click_tracking: bool = True
    # per-recipient values of a shared body (render once, personalize per recipient): each key found
    # in subject, HTML or text is replaced by its value, one pass, as SendGrid applies personalization
    # substitutions; providers without substitutions deliver `personalized()`
    substitutions: dict[str, str] = field(default_factory=dict)

    def personalized(self) -> OutgoingMail:
        """The mail as its recipient receives it: substitutions applied, none left."""
        if not self.substitutions:
            return self
        subs, keys = self.substitutions, tuple(sorted(self.substitutions))
        return replace(
            self,
            subject=_substituted(self.subject, subs, keys),
            html=_substituted(self.html, subs, keys),
            text=_substituted(self.text, subs, keys),
            substitutions={},
        )


@lru_cache(maxsize=64)
def _keys_pattern(keys: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("(" + "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)) + ")")


@lru_cache(maxsize=256)
def _segments(text: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """`text` split around the keys: literal, key, literal, ..., literal (cached: the mails of a
    shared body hold the same string, so it is split once)."""
    return tuple(_keys_pattern(keys).split(text))


def apply_substitutions(text: str, substitutions: Mapping[str, str]) -> str:
    """`text` with each key of `substitutions` replaced by its value in one pass (longest key first
    where keys overlap; a value is never scanned again): SendGrid's substitution rule."""
    if not substitutions or not text:
        return text
    return _substituted(text, substitutions, tuple(sorted(substitutions)))


def _substituted(text: str, substitutions: Mapping[str, str], keys: tuple[str, ...]) -> str:
    parts = _segments(text, keys)
    if len(parts) == 1:
        return text
    pieces = list(parts)
    pieces[1::2] = [substitutions[key] for key in parts[1::2]]
    return "".join(pieces)


def is_valid_email(address: str) -> bool:
    """Whether the address, exactly as given, can be mailed: the one address rule of the data gate
    and every sender (config/addresses.py: RFC 5321/5322 with its length limits, ASCII local part,
    domain in punycode)."""
    return is_sendable(address)


class SendStatus(StrEnum):
    """Normalised per-recipient outcome."""

    sent = "sent"  # accepted by the provider (queued or delivered to the outbox)
    rejected = "rejected"  # permanently refused (bad address, invalid payload): do not retry
    failed = "failed"  # definitely not accepted (no connection, an error response): safe to retry later
    # the request may have reached the provider and no answer came (read timeout, connection reset
    # after sending): never retried blindly, resolved by proof of acceptance or after a grace period
    in_doubt = "in_doubt"


@dataclass(frozen=True, slots=True)
class SendResult:
    message_key: str
    status: SendStatus
    provider_message_id: str | None = None
    error: str | None = None


ResultsCallback = Callable[[list[SendResult]], None]
# called with each request's mails just before it goes out; returns the ones that may go (the caller
# fences them in its ledger: a mail another attempt took over meanwhile is left out, never sent)
RequestFence = Callable[[list[OutgoingMail]], list[OutgoingMail]]


def fenced(mails: list[OutgoingMail], before_request: RequestFence | None) -> list[OutgoingMail]:
    """The mails of one request that may go out (all of them without a fence)."""
    return mails if before_request is None or not mails else before_request(mails)


class Sender(ABC):
    """A mail provider. Implementations must never raise for one bad recipient:
    they report it in that recipient's `SendResult`. They raise `MailerError`
    subclasses only for problems that concern the whole batch (configuration)."""

    name: str = "sender"
    # True: `confirm` knows for sure (a mail it does not confirm was not accepted), so doubtful mails
    # need no grace period (outbox, memory); False: absence of proof proves nothing (SendGrid)
    exact_confirm: bool = False

    @abstractmethod
    def send_batch(
        self,
        mails: Sequence[OutgoingMail],
        on_results: ResultsCallback | None = None,
        before_request: RequestFence | None = None,
    ) -> list[SendResult]:
        """Send the mails; return one result per mail attempted, in the given order. `on_results` is
        called with the results of each request as soon as it has them (the caller records them right
        away, so a crash leaves as few mails without a recorded outcome as possible). `before_request`
        (see `RequestFence`) sees each request's mails first; the mails it leaves out are not sent and
        get no result. A stop requested meanwhile (`throttle.stop_requested`) ends the batch: its
        mails not yet requested come back `failed` ("not attempted")."""

    def confirm(
        self, message_keys: Sequence[str], addresses: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Of mails whose outcome is unknown (in doubt, or a crash between the call and the ledger
        update), those the provider is known to have accepted, with their provider message id
        (`addresses`: each key's recipient, where the provider's lookup answers by address).
        Providers that cannot tell return {}."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
