"""Errors for people: the CLI prints one paragraph with what to do next for expected failures, exits
non-zero, shows the traceback only with --debug; broken campaign or segment files disable only
themselves (issue 12)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

import segments.rules
import shopmail.campaigns
from config.settings import Settings, get_settings
from shopmail.campaigns import broken_campaigns, get_campaign, registry
from shopmail.cli import app
from shopmail.run.errors import CONFIG_EXIT, explain
from shopmail.state import state_db

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 11, 23)


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _short(result, phrase: str, code: int) -> str:
    out = result.output
    assert result.exit_code == code, out
    assert phrase in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) < 15, out
    return out


def test_bad_settings_are_one_paragraph_and_debug_shows_the_traceback(settings, monkeypatch) -> None:
    monkeypatch.setenv("SHOPMAIL_TIMEZONE", "Mars/Olympus")
    get_settings.cache_clear()
    _short(_cli("campaigns"), "Set SHOPMAIL_TIMEZONE", CONFIG_EXIT)
    debug = _cli("--debug", "campaigns")
    assert debug.exit_code == CONFIG_EXIT and "Traceback" in debug.output and "Mars/Olympus" in debug.output
    monkeypatch.setenv("SHOPMAIL_DEBUG", "1")
    assert "Traceback" in _cli("campaigns").output
    monkeypatch.delenv("SHOPMAIL_DEBUG")
    monkeypatch.setenv("SHOPMAIL_TIMEZONE", "Europe/Moscow")
    monkeypatch.setenv("SHOPMAIL_FREQUENCY_CAP", "many")
    get_settings.cache_clear()
    _short(_cli("campaigns"), "SHOPMAIL_FREQUENCY_CAP: Input should be a valid integer", CONFIG_EXIT)


def test_missing_shop_file_table_and_column(settings: Settings, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", f"sqlite:///{tmp_path / 'nope.sqlite'}")
    get_settings.cache_clear()
    _short(_cli("segment", "vip"), "nope.sqlite does not exist", CONFIG_EXIT)

    shop = tmp_path / "shop.sqlite"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE clients (id INTEGER)")
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", f"sqlite:///{shop}")
    get_settings.cache_clear()
    out = _short(_cli("segment", "vip"), "has no table or view `customers`", CONFIG_EXIT)
    assert "birth_date (DATE)" in out  # what the contract expects

    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER, email TEXT, registered_at TEXT)")
    # first_name is optional (read as NULL): the first gap named is a required column
    _short(_cli("segment", "vip"), "has no required column `customers.marketing_consent`", CONFIG_EXIT)


@pytest.mark.integration
def test_wrong_credentials_and_unreachable_server_name_no_password(settings: Settings, monkeypatch) -> None:
    for url, phrase in (
        ("postgresql+psycopg://nobody_here:S3cretPw@127.0.0.1:5432/postgres", "Cannot connect"),
        ("postgresql+psycopg://shop:S3cretPw@127.0.0.1:1/shop", "Connection refused"),
    ):
        monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", url)
        get_settings.cache_clear()
        out = _short(_cli("segment", "vip"), phrase, 1)
        assert "S3cretPw" not in out and ":***@127.0.0.1" in out


def test_read_only_state_db_is_a_permission_message(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    state_db.upgrade(f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(OperationalError) as caught, engine.begin() as conn:
        conn.execute(text("DELETE FROM send_ledger"))
    explained = explain(caught.value)
    assert explained is not None and "refused a change" in explained.message
    assert "GRANT INSERT ON coupons" in explained.message


def test_coupon_codes_and_passwords_never_reach_the_message() -> None:
    class DataCheckFailed(RuntimeError):
        pass

    code = "BDAY-7KQ2-M9XD-4TZP"  # the shape of a personal coupon code (shopmail.state.coupons)
    failure = DataCheckFailed(
        f"Data checks failed, nothing sent: coupon {code} at postgresql://u:Pw0rd@db/shop; table empty"
    )
    message = explain(failure).message
    assert code not in message and "Pw0rd" not in message and "Fix these rows" in message


# --- local configuration errors -------------------------------------------------------------------


@pytest.fixture
def campaigns_dir(settings: Settings, tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    shutil.copy(ROOT / "config" / "campaigns" / "wakeup.toml", folder)
    (folder / "bad_toml.toml").write_text('name = "bad_toml"\ntitle = \n', encoding="utf-8")
    text_ = (ROOT / "config" / "campaigns" / "wakeup.toml").read_text(encoding="utf-8")
    (folder / "bad_cron.toml").write_text(
        text_.replace('name = "wakeup"', 'name = "bad_cron"').replace('"0 11 * * *"', '"0 25 * * *"'),
        encoding="utf-8",
    )
    (folder / "extra_key.toml").write_text(
        text_.replace('name = "wakeup"', 'name = "extra_key"\ncolour = "red"'), encoding="utf-8"
    )
    monkeypatch.setattr(shopmail.campaigns, "CAMPAIGNS_DIR", folder)
    registry.cache_clear()
    yield folder
    registry.cache_clear()


def test_a_broken_campaign_file_disables_only_its_campaign(campaigns_dir: Path) -> None:
    assert list(registry()) == ["wakeup"]
    broken = broken_campaigns()
    assert set(broken) == {"bad_toml", "bad_cron", "extra_key"}
    assert "bad cron '0 25 * * *'" in broken["bad_cron"] and "colour: Extra inputs" in broken["extra_key"]
    with pytest.raises(shopmail.campaigns.CampaignError, match="'bad_cron' is disabled, its file is broken"):
        get_campaign("bad_cron")
    listed = _cli("campaigns")
    assert listed.exit_code == 0 and "wakeup" in listed.output
    assert "bad_cron is disabled" in " ".join(listed.output.split())
    _short(_cli("run", "extra_key"), "Campaign configuration: campaign 'extra_key' is disabled", CONFIG_EXIT)


@pytest.mark.flow
def test_demo_day_shows_the_broken_campaign_runs_the_others_and_exits_non_zero(
    prefect_harness, campaigns_dir: Path
) -> None:
    from flows.daily_schedule import daily_schedule
    from shopmail.devtools.demo_shop import generate_demo_shop

    generate_demo_shop(get_settings().shop_url_resolved, customers=800, seed=7, today=AS_OF)
    results = daily_schedule(as_of=AS_OF, include_service=False, preapproved=True)
    assert results["wakeup"]["status"] == "completed" and results["wakeup"]["sent"] > 0
    assert results["bad_cron"]["status"] == "disabled" and "bad cron" in results["bad_cron"]["reason"]

    (campaigns_dir / "wakeup.toml").unlink()  # only broken campaigns left: the demo says so and fails
    registry.cache_clear()
    marker = {"today": AS_OF.isoformat(), "customers": 800, "seed": 42}  # the shop above: no regeneration
    (get_settings().data_dir / "demo_shop.json").write_text(json.dumps(marker))
    shown = _cli("demo", "--as-of", AS_OF.isoformat(), "--customers", "800", "--days", "1")
    assert shown.exit_code == 1, shown.output
    assert "3 of 3 campaigns did not complete" in shown.output and "Traceback" not in shown.output


def test_a_bad_segment_disables_only_itself(settings: Settings, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "segments.toml"
    path.write_text(
        '[segments.vip]\ntitle = "VIP"\nrule = { field = "total_spend", gte = 150000 }\n'
        '[segments.typo]\nrule = { field = "total_spent", gte = 1 }\n'
        '[segments.on_typo]\nrule = { all = [{ segment = "typo" }, { field = "age", gt = 18 }] }\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(segments.rules, "SEGMENTS_FILE", path)
    with pytest.raises(segments.rules.SegmentError, match="unknown field 'total_spent'"):
        segments.rules.load_segments(path)  # strict: what a check of the file uses
    catalogue = segments.rules.load_segments(strict=False)
    assert catalogue.names() == ["vip"] and set(catalogue.broken) == {"typo", "on_typo"}
    assert segments.rules.segment_names() == ["vip"]
    with pytest.raises(segments.rules.SegmentError, match="'on_typo' is disabled.*refers to segment 'typo'"):
        catalogue.get("on_typo")
    listed = _cli("segment", "--list")
    assert listed.exit_code == 0 and "vip" in listed.output and "typo is disabled" in listed.output
    path.write_text("[segments.vip\n", encoding="utf-8")  # unreadable file: no dropdown, runs say why
    assert segments.rules.segment_names() == []
