"""Pick the configured `Sender`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.settings import MailProvider
from tasks.mailer.base import Sender
from tasks.mailer.errors import MailerConfigurationError
from tasks.mailer.memory import InMemorySender
from tasks.mailer.outbox import FileOutboxSender
from tasks.mailer.sendgrid_api import SendGridSender

if TYPE_CHECKING:
    from config.settings import Settings


def make_sender(settings: Settings) -> Sender:
    """The sender for `settings.mail_provider` (outbox, sendgrid or memory)."""
    try:
        provider = MailProvider(settings.mail_provider)
    except ValueError as exc:
        raise MailerConfigurationError(f"unknown mail provider {settings.mail_provider!r}") from exc
    if provider is MailProvider.outbox:
        return FileOutboxSender(settings.outbox_path)
    if provider is MailProvider.memory:
        return InMemorySender()
    if provider is MailProvider.sendgrid:
        key = settings.sendgrid_api_key.get_secret_value() if settings.sendgrid_api_key else ""
        if not key.strip():
            raise MailerConfigurationError(
                "mail_provider is sendgrid but SHOPMAIL_SENDGRID_API_KEY is not set"
            )
        return SendGridSender(
            key,
            settings.sendgrid_host,
            settings.sendgrid_timeout_s,
            settings.sendgrid_retries,
        )
    raise MailerConfigurationError(f"unsupported mail provider {provider!r}")  # pragma: no cover
