"""Shared fixtures: isolated settings per test, one Prefect test server per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest  # noqa: E402

from config.settings import Settings, get_settings  # noqa: E402
from shopmail.campaigns import registry  # noqa: E402
from shopmail.db import get_engine  # noqa: E402

SHOPMAIL_ENV = [k for k in os.environ if k.startswith("SHOPMAIL_")]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointing at a fresh data folder (demo shop, state DB, outbox) under tmp_path."""
    for key in SHOPMAIL_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("SHOPMAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "outbox")
    monkeypatch.setenv("SHOPMAIL_UNSUBSCRIBE_SECRET", "test-secret")
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
