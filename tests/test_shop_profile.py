"""The shop profile before a real send (issue 25; issue 23's coupon secret): every value a customer can
see that still holds a shipped demo value is refused, with the setting named, wherever mail reaches real
people: SendGrid, or any provider on a shop database that is not the demo shop. The demo shop (its own
file, or any database `shopmail demo-data` generated) keeps working with no setup; a dry run is allowed;
`check-shop` shows the profile and what a real send would refuse."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config.settings import (
    DemoSettingsError,
    MailProvider,
    Settings,
    demo_values_in_use,
    get_settings,
    is_real_send,
    require_production_settings,
)
from config.shop_profile import DEMO_PROFILE, profile_rows
from shopmail.db import DEMO_SHOP_MARKER, get_engine, is_demo_shop
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.mailer.errors import MailerConfigurationError
from shopmail.mailer.factory import make_sender
from shopmail.mailer.outbox import FileOutboxSender
from tests.conftest import PRODUCTION_ENV, production_values

AS_OF_TEXT = "2026-11-23"
PROFILE_ENV = [k for k in PRODUCTION_ENV if k.removeprefix("SHOPMAIL_").lower() in DEMO_PROFILE]


def _bare(**values) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def generated_shop(tmp_path_factory) -> Path:
    """A demo shop generated outside the data folder (it carries demo-data's marker)."""
    from datetime import date

    path = tmp_path_factory.mktemp("shops") / "generated.sqlite"
    generate_demo_shop(f"sqlite:///{path}", customers=150, seed=5, today=date(2026, 11, 23))
    return path


def _real_shop(generated: Path, tmp_path: Path) -> str:
    """A copy of the generated shop without demo-data's marker: a shop with real customers."""
    target = tmp_path / "real_shop.sqlite"
    target.write_bytes(generated.read_bytes())
    with sqlite3.connect(target) as conn:
        conn.execute(f"DROP TABLE {DEMO_SHOP_MARKER}")
    return f"sqlite:///{target}"


def test_every_customer_visible_demo_value_is_named(no_env) -> None:
    demo = _bare()
    found = demo_values_in_use(demo, profile=True)
    visible = [f for f, value in DEMO_PROFILE.items() if value is not None or f == "tracking_url"]
    for field in visible:
        if field in {"reply_to", "logo_url"}:  # unset: falls back to support_email / the shop name
            assert field not in found
        else:
            assert field in found, field
    assert {"unsubscribe_secret", "coupon_secret", "sender_email"} <= set(found)
    assert demo_values_in_use(_bare(**production_values()), profile=True) == []
    english = _bare(**{**production_values(), "shop_name_genitive": "", "shop_name_prepositional": ""})
    assert demo_values_in_use(english, profile=True) == []  # blank forms: the shop name itself
    no_link = _bare(**{**production_values(), "tracking_url": ""})
    assert demo_values_in_use(no_link, profile=True) == []  # '' = no tracking link, a decision
    unset = production_values()
    unset.pop("tracking_url")
    assert demo_values_in_use(_bare(**unset), profile=True) == ["tracking_url"]  # Russian Post by default
    mixed = _bare(**{**production_values(), "social_links": {"ВКонтакте": "https://vk.example/shop"}})
    assert demo_values_in_use(mixed, profile=True) == ["social_links"]
    lookalike = {"sender_email": "mail@e2e-shop.example.org", "support_email": "help@myshop.example.com"}
    assert demo_values_in_use(_bare(**{**production_values(), **lookalike}), profile=True) == []
    subdomain = {"unsubscribe_url": "https://mail.shop.example/unsubscribe"}
    assert demo_values_in_use(_bare(**{**production_values(), **subdomain}), profile=True) == [
        "unsubscribe_url"
    ]
    with pytest.raises(DemoSettingsError) as caught:
        require_production_settings(demo, "sending (outbox provider)", sender=True, profile=True)
    message = str(caught.value)
    assert "SHOPMAIL_SHOP_NAME (now 'Демо-магазин')" in message
    assert "SHOPMAIL_SUPPORT_PHONE (now '+7 800 000-00-00')" in message
    assert "SHOPMAIL_TRACKING_URL (now unset)" in message and "SHOPMAIL_COUPON_SECRET" in message


def test_a_real_send_is_sendgrid_or_a_shop_that_is_not_the_demo(no_env, generated_shop, tmp_path) -> None:
    data = tmp_path / "data"
    own = data / "demo_shop.sqlite"
    assert is_demo_shop(f"sqlite:///{own}", data)  # the embedded demo shop, even before it exists
    assert is_demo_shop(f"sqlite:///{generated_shop}", data)  # generated elsewhere: its marker
    real = _real_shop(generated_shop, tmp_path)
    assert not is_demo_shop(real, data)
    assert not is_demo_shop(f"sqlite:///{tmp_path / 'missing.sqlite'}", data)
    assert not (tmp_path / "missing.sqlite").exists()  # not created by asking
    outbox = _bare(mail_provider=MailProvider.outbox)
    sendgrid = _bare(mail_provider=MailProvider.sendgrid)
    assert is_real_send(sendgrid, demo_shop=True) and is_real_send(outbox, demo_shop=False)
    assert not is_real_send(outbox, demo_shop=True)
    # the demo shop through this machine's local SendGrid server (`make demo`) reaches no one...
    local = _bare(mail_provider=MailProvider.sendgrid, sendgrid_host="http://127.0.0.1:8025")
    assert not is_real_send(local, demo_shop=True)
    assert not is_real_send(
        _bare(mail_provider=MailProvider.sendgrid, sendgrid_host="http://localhost:1"), True
    )
    # ...a real shop through it, or the demo shop through any other host, is a real send
    assert is_real_send(local, demo_shop=False)
    assert is_real_send(
        _bare(mail_provider=MailProvider.sendgrid, sendgrid_host="http://10.0.0.5:8025"), True
    )

    # the outbox on a real shop: the demo coupon secret (issue 23) and every demo value are refused
    on_real = {"shop_db_url": real, "data_dir": data, "outbox_dir": tmp_path / "out"}
    with pytest.raises(MailerConfigurationError) as caught:
        make_sender(_bare(**on_real))
    assert "SHOPMAIL_COUPON_SECRET" in str(caught.value) and "SHOPMAIL_SHOP_NAME" in str(caught.value)
    only_secret = {**production_values(), "coupon_secret": "dev-only-change-me-coupons"}
    with pytest.raises(MailerConfigurationError, match="SHOPMAIL_COUPON_SECRET"):
        make_sender(_bare(**on_real, **only_secret))
    assert isinstance(make_sender(_bare(**on_real, **production_values())), FileOutboxSender)
    # a platform kit still linking to its example shop: every product link would go there
    path = real.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE shopmail_kit_config (name TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO shopmail_kit_config VALUES ('store_url', 'https://shop.example/')")
    get_engine.cache_clear()
    with pytest.raises(MailerConfigurationError, match=r"shopmail_kit_config\.store_url"):
        make_sender(_bare(**on_real, **production_values()))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE shopmail_kit_config SET value = 'https://tea-house.tests.example/'")
    assert isinstance(make_sender(_bare(**on_real, **production_values())), FileOutboxSender)
    # the demo shop needs no setup
    assert isinstance(make_sender(_bare(data_dir=data, outbox_dir=tmp_path / "out")), FileOutboxSender)
    shop_generated = {"shop_db_url": f"sqlite:///{generated_shop}", "data_dir": data}
    assert isinstance(make_sender(_bare(**shop_generated, outbox_dir=tmp_path / "o")), FileOutboxSender)


def test_the_profile_rows_show_values_and_demo_ones(no_env) -> None:
    rows = {row.setting: row for row in profile_rows(_bare(cart_path="/index.php?route=checkout/cart"))}
    assert rows["SHOPMAIL_SHOP_NAME"].demo and rows["SHOPMAIL_SHOP_NAME"].value == "Демо-магазин"
    assert rows["SHOPMAIL_CART_PATH"].value == "https://shop.example/index.php?route=checkout/cart"
    assert not rows["SHOPMAIL_REPLY_TO"].demo  # unset: the support address (itself a demo value)
    rows = {row.setting: row for row in profile_rows(_bare(**production_values()))}
    assert not any(row.demo for row in rows.values())


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No SHOPMAIL_* variable, no .env file."""
    import os

    for key in [k for k in os.environ if k.startswith("SHOPMAIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _demo_profile(monkeypatch) -> None:
    """The production secrets and sender stay; every other customer-visible value is the demo's."""
    for name in PROFILE_ENV:
        if name != "SHOPMAIL_SENDER_EMAIL":
            monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


def test_the_cli_refuses_a_real_send_and_check_shop_says_why(
    settings, generated_shop, tmp_path, monkeypatch
) -> None:
    from shopmail.cli import app

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", _real_shop(generated_shop, tmp_path))
    monkeypatch.setenv("SHOPMAIL_MAX_ORDER_AGE_DAYS", "0")
    _demo_profile(monkeypatch)
    runner = CliRunner()
    for args in (["run", "birthday"], ["poll"], ["demo"], ["serve"]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2, (args, refused.output)
        assert (
            "Refusing to start sending (outbox provider) to the customers of a shop database"
            in refused.output
        )
        assert (
            "SHOPMAIL_SHOP_NAME (now 'Демо-магазин')" in refused.output
            and "SHOPMAIL_COUPON_SECRET" not in refused.output
        )
    assert not settings.outbox_path.exists()  # nothing written
    shown = runner.invoke(app, ["check-shop", "--format", "json", "--as-of", AS_OF_TEXT])
    result = json.loads(shown.stdout)
    assert shown.exit_code == 0 and result["ok"], [c for c in result["campaigns"] if not c["can_run"]]
    assert "SHOPMAIL_SHOP_NAME" in result["profile_missing"] and result["real_send"]
    assert "SHOPMAIL_UNSUBSCRIBE_URL" in result["profile_missing"]
    demo_rows = {row["setting"] for row in result["profile"] if row["demo"]}
    assert {"SHOPMAIL_SHOP_NAME", "SHOPMAIL_SUPPORT_PHONE", "SHOPMAIL_SOCIAL_LINKS"} <= demo_rows
    table = runner.invoke(app, ["check-shop", "--as-of", AS_OF_TEXT])
    assert "A real send (sending (outbox provider)" in table.output and "(demo value)" in table.output


@pytest.mark.flow
def test_a_real_run_with_demo_values_sends_and_issues_nothing(
    prefect_harness, settings, generated_shop, tmp_path, monkeypatch
) -> None:
    """The flow itself (a deployment's run needs no CLI): on a real shop with the demo profile the send
    tasks refuse before claiming, so no mail, no coupon, no ledger row; the same run on the demo shop
    sends."""
    from datetime import date

    from flows.campaign import campaign_flow
    from shopmail.state import state_db

    real = _real_shop(generated_shop, tmp_path)
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", real)
    monkeypatch.setenv("SHOPMAIL_QUIET_HOURS", "off")
    _demo_profile(monkeypatch)
    with get_engine(real).connect() as conn:
        coupons_before = conn.execute(text("SELECT COUNT(*) FROM coupons")).scalar()
    with pytest.raises(RuntimeError, match="batches failed"):
        campaign_flow(campaign="birthday", as_of=date(2026, 11, 23), preapproved=True)
    assert not list(get_settings().outbox_path.glob("*.eml"))
    with get_engine(real).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM coupons")).scalar() == coupons_before
    state = state_db.upgrade(get_settings().state_url_resolved)
    with state.connect() as conn:
        sent = conn.execute(text("SELECT COUNT(*) FROM send_ledger WHERE status = 'sent'")).scalar()
    assert sent == 0

    demo_copy = tmp_path / "demo_copy.sqlite"  # a generated demo shop (its marker kept): allowed
    demo_copy.write_bytes(generated_shop.read_bytes())
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", f"sqlite:///{demo_copy}")
    get_settings.cache_clear()
    report = campaign_flow(campaign="birthday", as_of=date(2026, 11, 23), preapproved=True)
    assert report.counts()["sent"] >= 1 and list(get_settings().outbox_path.glob("*.eml"))
