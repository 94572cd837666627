"""In-memory sender for tests: remembers every accepted mail by its message key."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence

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
from shopmail.mailer.throttle import not_attempted


class InMemorySender(Sender):
    """Keeps accepted mails in `sent` (message_key -> mail, in first-send order).

    Resending a key replaces the stored mail instead of adding one (idempotent).
    `fail_addresses` are rejected (simulated permanent refusal);
    `unavailable_addresses` get `failed` (simulated transient failure).
    """

    name = "memory"
    exact_confirm = True

    def __init__(
        self,
        fail_addresses: Iterable[str] = (),
        unavailable_addresses: Iterable[str] = (),
    ) -> None:
        self.fail_addresses = {a.lower() for a in fail_addresses}
        self.unavailable_addresses = {a.lower() for a in unavailable_addresses}
        self.sent: dict[str, OutgoingMail] = {}
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    @property
    def messages(self) -> list[OutgoingMail]:
        """The accepted mails as a list."""
        with self._lock:
            return list(self.sent.values())

    def send_batch(
        self,
        mails: Sequence[OutgoingMail],
        on_results: ResultsCallback | None = None,
        before_request: RequestFence | None = None,
    ) -> list[SendResult]:
        stop = not_attempted(None)
        if stop:
            results = [SendResult(m.message_key, SendStatus.failed, error=stop) for m in mails]
        else:
            allowed = fenced(list(mails), before_request)
            with self._lock:
                self.batch_sizes.append(len(allowed))
                results = [self._send_one(mail) for mail in allowed]
        if on_results is not None and results:
            on_results(results)
        return results

    def _send_one(self, mail: OutgoingMail) -> SendResult:
        address = mail.to_email.lower()
        if not is_valid_email(mail.to_email):
            return SendResult(
                mail.message_key, SendStatus.rejected, error=f"invalid address {mail.to_email!r}"
            )
        if address in self.fail_addresses:
            return SendResult(mail.message_key, SendStatus.rejected, error="recipient refused")
        if address in self.unavailable_addresses:
            return SendResult(mail.message_key, SendStatus.failed, error="provider unavailable")
        self.sent[mail.message_key] = mail.personalized()  # as the recipient gets it
        return SendResult(
            mail.message_key, SendStatus.sent, provider_message_id=_provider_id(mail.message_key)
        )

    def confirm(self, message_keys: Sequence[str], addresses: object = None) -> dict[str, str]:
        with self._lock:
            return {k: _provider_id(k) for k in message_keys if k in self.sent}

    def clear(self) -> None:
        """Forget every mail and batch."""
        with self._lock:
            self.sent.clear()
            self.batch_sizes.clear()


def _provider_id(message_key: str) -> str:
    return "mem-" + hashlib.sha256(message_key.encode()).hexdigest()[:16]
