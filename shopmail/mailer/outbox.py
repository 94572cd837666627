"""File outbox: every mail becomes one RFC 5322 `.eml` file (dev, demo, offline tests)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from shopmail.db import private_dir
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
from shopmail.mailer.throttle import not_attempted

logger = logging.getLogger(__name__)

#: CRLF line endings, as RFC 5322 requires; non-ASCII headers are RFC 2047 encoded.
EML_POLICY = policy.SMTP
CUSTOM_ARG_HEADER_PREFIX = "X-Shopmail-"
KEY_HEADER = "X-Shopmail-Key"
CATEGORIES_HEADER = "X-Shopmail-Categories"
SEND_AT_HEADER = "X-Shopmail-Send-At"  # unix time the mail is scheduled for (quiet hours)
_FIELD_NAME_RE = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except ":"


def outbox_file_name(message_key: str) -> str:
    """Deterministic file name of a mail: the same key always maps to the same file."""
    return hashlib.sha256(message_key.encode()).hexdigest()[:32] + ".eml"


def message_id_for(mail: OutgoingMail) -> str:
    """Deterministic RFC 5322 Message-ID derived from the message key."""
    digest = hashlib.sha256(mail.message_key.encode()).hexdigest()[:40]
    domain = mail.from_email.rpartition("@")[2] or "shopmail.local"
    return f"<{digest}@{domain}>"


def build_message(mail: OutgoingMail, now: datetime | None = None) -> EmailMessage:
    """The MIME message of a mail (multipart/alternative when it has text and HTML).

    Raises `ValueError` for a mail that cannot be expressed (bad address, header injection,
    no content, a custom header colliding with a standard one).
    """
    if not is_valid_email(mail.to_email):
        raise ValueError(f"invalid recipient address {mail.to_email!r}")
    if not is_valid_email(mail.from_email):
        raise ValueError(f"invalid sender address {mail.from_email!r}")
    if not (mail.text or mail.html):
        raise ValueError("mail has neither text nor HTML content")

    msg = EmailMessage(policy=policy.default)
    msg["From"] = Address(display_name=mail.from_name, addr_spec=mail.from_email)
    msg["To"] = Address(display_name=mail.to_name, addr_spec=mail.to_email)
    if mail.reply_to:
        if not is_valid_email(mail.reply_to):
            raise ValueError(f"invalid reply-to address {mail.reply_to!r}")
        msg["Reply-To"] = mail.reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id_for(mail)
    extra = {**mail.headers, KEY_HEADER: mail.message_key}
    extra.update((CUSTOM_ARG_HEADER_PREFIX + k, v) for k, v in mail.custom_args.items())
    for name, value in extra.items():
        if not _FIELD_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        msg[name] = value  # policy.default refuses CR/LF and duplicate unique headers
    if mail.categories:
        msg[CATEGORIES_HEADER] = ", ".join(mail.categories)
    if mail.send_at is not None:
        msg[SEND_AT_HEADER] = str(int(mail.send_at))

    if mail.text:
        msg.set_content(mail.text, charset="utf-8")
        if mail.html:
            msg.add_alternative(mail.html, subtype="html", charset="utf-8")
    else:
        msg.set_content(mail.html, subtype="html", charset="utf-8")
    return msg


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and `os.replace`."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class FileOutboxSender(Sender):
    """Writes each mail to `<folder>/<sha256(message_key)[:32]>.eml` (mode 0600, via `mkstemp`).

    Resending a mail overwrites its file (idempotent); the file name is the provider id.
    """

    name = "outbox"
    exact_confirm = True  # the file exists or it does not

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        try:
            private_dir(self.folder)  # the mails hold addresses and coupons: owner only (0700)
        except OSError as exc:
            raise MailerConfigurationError(f"cannot create outbox folder {self.folder}: {exc}") from exc

    def path_for(self, message_key: str) -> Path:
        """Where the mail with this key is (or will be) written."""
        return self.folder / outbox_file_name(message_key)

    def send_batch(
        self,
        mails: Sequence[OutgoingMail],
        on_results: ResultsCallback | None = None,
        before_request: RequestFence | None = None,
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for mail in fenced(list(mails), before_request):
            stop = not_attempted(None)
            results.append(
                SendResult(mail.message_key, SendStatus.failed, error=stop) if stop else self._send_one(mail)
            )
        if on_results is not None and results:
            on_results(results)
        return results

    def confirm(self, message_keys: Sequence[str], addresses: object = None) -> dict[str, str]:
        """A mail whose file exists was delivered to the outbox."""
        return {k: self.path_for(k).name for k in message_keys if self.path_for(k).exists()}

    def _send_one(self, mail: OutgoingMail) -> SendResult:
        try:
            data = build_message(mail.personalized()).as_bytes(policy=EML_POLICY)
        except (ValueError, TypeError) as exc:
            return SendResult(mail.message_key, SendStatus.rejected, error=str(exc))
        path = self.path_for(mail.message_key)
        try:
            write_atomically(path, data)
        except OSError as exc:  # disk full, permissions: worth a later retry
            logger.warning("outbox write failed for %s: %s", path.name, exc)
            return SendResult(mail.message_key, SendStatus.failed, error=f"write failed: {exc}")
        return SendResult(mail.message_key, SendStatus.sent, provider_message_id=path.name)
