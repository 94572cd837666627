"""Shared fixtures: isolated settings per test, one Prefect test server per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# Importing prefect.main sets up Prefect's logging now, bound to pytest's session-long streams; set up
# later inside a CliRunner invocation, its console handler would keep that invocation's stream, closed
# afterwards ("I/O operation on closed file" in every later flow test).
import prefect.main  # noqa: E402, F401
import pytest  # noqa: E402

from config.settings import Settings, get_settings  # noqa: E402
from shopmail.campaigns import registry  # noqa: E402
from shopmail.db import get_engine  # noqa: E402

SHOPMAIL_ENV = [k for k in os.environ if k.startswith("SHOPMAIL_")]

# Not the shipped demo values: SendGrid runs and the feedback app refuse those
# (config.settings.require_production_settings). Every test gets them through `settings` (and
# subprocesses started with os.environ inherit them); a test that builds Settings by hand or an
# env dict from scratch can use PRODUCTION_ENV / production_values().
PRODUCTION_ENV = {
    "SHOPMAIL_UNSUBSCRIBE_SECRET": "test-secret",
    "SHOPMAIL_COUPON_SECRET": "test-coupon-secret",
    "SHOPMAIL_SENDER_EMAIL": "shop@tests.example",
}


def production_values() -> dict[str, str]:
    """PRODUCTION_ENV as Settings(**values) keyword arguments."""
    return {key.removeprefix("SHOPMAIL_").lower(): value for key, value in PRODUCTION_ENV.items()}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointing at a fresh data folder (demo shop, state DB, outbox) under tmp_path."""
    for key in SHOPMAIL_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("SHOPMAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "outbox")
    for key, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    get_engine.cache_clear()
    registry.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    get_engine.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server + DB for the whole session (starting one costs ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
