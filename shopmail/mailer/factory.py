"""Pick the configured `Sender`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.settings import DemoSettingsError, MailProvider, require_production_settings
from shopmail.mailer.base import Sender
from shopmail.mailer.errors import MailerConfigurationError
from shopmail.mailer.memory import InMemorySender
from shopmail.mailer.outbox import FileOutboxSender
from shopmail.mailer.sendgrid_api import SendGridSender
from shopmail.mailer.throttle import ErrorBudget

if TYPE_CHECKING:
    from config.settings import Settings


def make_sender(settings: Settings, error_budget: ErrorBudget | None = None) -> Sender:
    """The sender for `settings.mail_provider` (outbox, sendgrid or memory).

    SendGrid reaches real people: it refuses the shipped demo secrets and From address
    (`MailerConfigurationError`, never retried)."""
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
        try:
            require_production_settings(settings, "the SendGrid sender", sender=True)
        except DemoSettingsError as exc:
            raise MailerConfigurationError(str(exc)) from None
        return SendGridSender(
            key,
            settings.sendgrid_host,
            settings.sendgrid_timeout_s,
            settings.sendgrid_retries,
            backoff_base_s=settings.sendgrid_backoff_s,
            max_rate_limit_wait_s=settings.sendgrid_max_rate_limit_wait_s,
            concurrency=settings.sendgrid_concurrency,
            rate_per_s=settings.sendgrid_rate_per_s,
            error_budget=error_budget,
            activity_lookup=settings.sendgrid_activity_lookup,
        )
    raise MailerConfigurationError(f"unsupported mail provider {provider!r}")  # pragma: no cover
