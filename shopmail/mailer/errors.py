"""Mailer error hierarchy (modelled on django-anymail's exceptions)."""

from __future__ import annotations


class MailerError(Exception):
    """Base class of every mail-provider error."""


class MailerConfigurationError(MailerError):
    """The provider is not configured (missing key, bad host): nothing can be sent."""


class ProviderRejectedError(MailerError):
    """The provider refused the request permanently (HTTP 400/401/403/413)."""

    def __init__(self, message: str, status_code: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class ProviderUnavailableError(MailerError):
    """A transient failure (HTTP 429/5xx, timeout, dropped connection): retry later."""

    def __init__(
        self, message: str, status_code: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s
