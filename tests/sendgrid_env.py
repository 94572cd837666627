"""Environment of a `shopmail` subprocess sending to the local SendGrid server (crash and concurrency
tests): the settings every such test shares, plus the test's own (`extra`, env names as keywords)."""

from __future__ import annotations

from config.settings import Settings


def sendgrid_process_env(settings: Settings, sink_url: str, **extra: str) -> dict[str, str]:
    from prefect.settings import get_current_settings

    from tests.conftest import PRODUCTION_ENV

    return {
        **PRODUCTION_ENV,  # the production secrets, sender and shop profile a real send needs
        "SHOPMAIL_DATA_DIR": str(settings.data_dir),
        "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
        "SHOPMAIL_SENDGRID_HOST": sink_url,
        "SHOPMAIL_SENDGRID_API_KEY": "SG.test-key",
        "SHOPMAIL_SENDGRID_BACKOFF_S": "0.05",
        "SHOPMAIL_SENDGRID_CONCURRENCY": "2",
        "PREFECT_API_URL": str(get_current_settings().api.url),
        **extra,
    }
