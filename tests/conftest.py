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

# Not the shipped demo values: real sends (SendGrid, or a shop database that is not the demo shop)
# and the feedback app refuse those (config.settings.require_production_settings). Every test gets
# them through `settings` (and subprocesses started with os.environ inherit them); a test that builds
# Settings by hand or an env dict from scratch can use PRODUCTION_ENV / production_values().
PRODUCTION_ENV = {
    "SHOPMAIL_UNSUBSCRIBE_SECRET": "test-secret",
    "SHOPMAIL_COUPON_SECRET": "test-coupon-secret",
    "SHOPMAIL_SENDER_EMAIL": "shop@tests.example",
    # the shop profile (config/shop_profile.py): what a customer sees
    "SHOPMAIL_SENDER_NAME": "Чайный дом",
    "SHOPMAIL_SHOP_NAME": "Чайный дом",
    "SHOPMAIL_SHOP_NAME_GENITIVE": "Чайного дома",
    "SHOPMAIL_SHOP_NAME_PREPOSITIONAL": "Чайном доме",
    "SHOPMAIL_SHOP_URL": "https://tea-house.tests.example",
    "SHOPMAIL_SUPPORT_EMAIL": "help@tea-house.tests.example",
    "SHOPMAIL_SUPPORT_PHONE": "+7 495 123-45-67",
    "SHOPMAIL_SOCIAL_LINKS": '{"Telegram": "https://t.me/tea_house_tests"}',
    "SHOPMAIL_LEGAL_FOOTER": "ООО «Чайный дом», 190000, Санкт-Петербург, Невский пр., 1",
    "SHOPMAIL_UNSUBSCRIBE_URL": "https://mail.tea-house.tests.example/unsubscribe",
    "SHOPMAIL_TRACKING_URL": "https://www.pochta.ru/tracking#{tracking_number}",
    "SHOPMAIL_UNSUBSCRIBE_MAILBOX": "unsubscribe@tea-house.tests.example",
    # the demo shop's product pages live on shop.example: a shop may link to more hosts than its own
    "SHOPMAIL_LINK_HOSTS": "shop.example",
}
FEEDBACK_ORIGIN = "https://mail.tea-house.tests.example"  # of SHOPMAIL_UNSUBSCRIBE_URL: preview links


def production_values() -> dict[str, str]:
    """PRODUCTION_ENV as Settings(**values) keyword arguments."""
    import json

    values = {key.removeprefix("SHOPMAIL_").lower(): value for key, value in PRODUCTION_ENV.items()}
    values["social_links"] = json.loads(values["social_links"])
    return values


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


CONFIG = Path(__file__).resolve().parent.parent / "config"


def _single_mail_campaigns(
    names: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The shipped campaigns with `names` as the single mails they were before they became series
    (config/single_mail_examples/), in SHOPMAIL_CAMPAIGNS_DIR: subprocesses started with os.environ get
    the same folder."""
    import shutil

    folder = tmp_path / ("campaigns-single-" + "-".join(names))
    shutil.copytree(CONFIG / "campaigns", folder)
    for name in names:
        shutil.copyfile(CONFIG / "single_mail_examples" / f"{name}.toml", folder / f"{name}.toml")
    monkeypatch.setenv("SHOPMAIL_CAMPAIGNS_DIR", str(folder))
    get_settings.cache_clear()
    registry.cache_clear()
    return get_settings()


@pytest.fixture
def single_mail_wakeup(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`wakeup` as a single mail: for tests that use it as their everyday trigger campaign (volume, A/B
    splits, crashes, oracles of one mail per order) and predate the series; they also prove that a
    single-mail file keeps working."""
    return _single_mail_campaigns(("wakeup",), tmp_path, monkeypatch)


@pytest.fixture
def single_mail_welcome(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`welcome` as a single mail: for the poller tests whose oracle is one mail per registration in a
    poll's window (the series sends later steps between polls: tests/test_series_welcome.py)."""
    return _single_mail_campaigns(("welcome",), tmp_path, monkeypatch)


@pytest.fixture(autouse=True)
def no_local_prefect_server_left(tmp_path: Path) -> Iterator[None]:
    """A `shopmail` command run by a test without PREFECT_API_URL starts the local Prefect server, which
    outlives the command by design; stop it after the test (left running, each costs CPU and memory for
    the rest of the suite)."""
    yield
    from shopmail.run import local_prefect

    for recorded in tmp_path.rglob(local_prefect.STATE_FILE):
        local_prefect.stop(recorded.parent)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server + DB for the whole session (starting one costs ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
