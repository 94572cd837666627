"""Pick the configured `Sender`."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import httpx

from config.settings import (
    DemoSettingsError,
    MailProvider,
    is_real_send,
    kit_demo_message,
    needs_demo_shop_check,
    real_send_purpose,
    require_production_settings,
)
from shopmail.db import is_demo_shop, kit_demo_values
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

    A real send (SendGrid, or any provider on a shop database that is not the demo shop) reaches real
    people: it refuses the shipped demo secrets, From address and every customer-visible demo value of
    the shop profile (`MailerConfigurationError`, never retried; nothing is claimed or issued)."""
    try:
        provider = MailProvider(settings.mail_provider)
    except ValueError as exc:
        raise MailerConfigurationError(f"unknown mail provider {settings.mail_provider!r}") from exc
    if is_real_send(settings, needs_demo_shop_check(settings) and _demo_shop(settings)):
        try:
            require_production_settings(settings, real_send_purpose(settings), sender=True, profile=True)
        except DemoSettingsError as exc:
            raise MailerConfigurationError(str(exc)) from None
        if kit := kit_demo_values(settings.shop_url_resolved):
            raise MailerConfigurationError(kit_demo_message(real_send_purpose(settings), kit))
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
            client=shared_client(settings.sendgrid_host, settings.sendgrid_timeout_s),
            backoff_base_s=settings.sendgrid_backoff_s,
            max_rate_limit_wait_s=settings.sendgrid_max_rate_limit_wait_s,
            concurrency=settings.sendgrid_concurrency,
            rate_per_s=settings.sendgrid_rate_per_s,
            error_budget=error_budget,
            activity_lookup=settings.sendgrid_activity_lookup,
            activity_budget_s=settings.sendgrid_activity_budget_s,
        )
    raise MailerConfigurationError(f"unsupported mail provider {provider!r}")  # pragma: no cover


def _demo_shop(settings: Settings) -> bool:
    return is_demo_shop(settings.shop_url_resolved, settings.data_dir)


@lru_cache(maxsize=8)
def shared_client(host: str, timeout_s: float) -> httpx.Client:
    """One pooled HTTP client per SendGrid host in this process, shared by the batches' senders (each
    new client costs about 25 ms, most of it its TLS context, and a new connection per batch); a
    sender does not close a client it did not make."""
    return httpx.Client(
        timeout=timeout_s, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
    )
