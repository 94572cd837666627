"""`check-shop` and the runs tell the same truth (issue 25), on the embedded SQLite path: a dataset the
mapping empties stops the run with the reason (never "sent 0 of 0"), the dry runs `check-shop` performs
name the campaign, dataset and column, and the machine-readable output of `campaigns`, `check-shop` and
`history` is complete when piped (no name cut at 80 columns)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config.settings import Settings, get_settings
from shopmail.campaigns import get_campaign, registry
from shopmail.run.campaign_check import dry_run
from shopmail.shop.data_checks import run_gate
from shopmail.shop.extract import UNREADABLE_TIMES, day_end_utc, extract
from shopmail.state import state_db
from tests.test_connect_shop import _copy

TODAY = dt.date(2026, 3, 15)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    from shopmail.devtools.demo_shop import generate_demo_shop

    path = tmp_path_factory.mktemp("shop") / "shop.sqlite"
    generate_demo_shop(f"sqlite:///{path}", customers=150, seed=4, today=TODAY)
    return path


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, shop_db_url=url, data_dir=tmp_path / "data", max_order_age_days=0)


def test_text_dates_stop_the_run_with_the_reason(shop: Path, tmp_path: Path) -> None:
    """Times as text a view formats ('13/03/2026 04:07'): the SQL window filter compares them as text
    and keeps no order; the gate says so instead of "sent 0 of 0", and the dry run names the column."""
    url = _copy(shop, tmp_path, "UPDATE orders SET created_at = strftime('%d/%m/%Y %H:%M', created_at)")
    settings = _settings(url, tmp_path)
    frames = extract(settings_engine(url), ["customers", "orders"], TODAY, settings.tz, 90)
    assert frames["orders"].empty
    examples = frames["orders"].attrs[UNREADABLE_TIMES]["created_at"]
    assert examples and all("/" in e for e in examples)
    report = run_gate(frames, TODAY, day_end_utc(TODAY, settings.tz))
    assert not report.success and "orders.created_at: no value reads as a time" in report.failure_text()
    state = state_db.upgrade(settings.state_url_resolved)
    now = dt.datetime(2026, 3, 15, 12)
    outcome = dry_run(get_campaign("followup_basic"), TODAY, settings, settings_engine(url), state, now)
    assert not outcome.completed and outcome.stage == "data checks"
    assert (outcome.dataset, outcome.column) == ("orders", "created_at")
    welcome = dry_run(get_campaign("welcome"), TODAY, settings, settings_engine(url), state, now)
    assert welcome.completed, welcome.reason  # customers only: unaffected


def test_a_mapping_that_returns_nothing_stops_the_run(shop: Path, tmp_path: Path) -> None:
    url = _copy(  # a view whose status mapping matches no value of the shop
        shop,
        tmp_path,
        "ALTER TABLE orders RENAME TO shop_orders",
        "CREATE VIEW orders AS SELECT id, customer_id, CASE status WHEN 'Complete' THEN 'delivered' END "
        "AS status, created_at, total, currency FROM shop_orders",
    )
    settings = _settings(url, tmp_path)
    frames = extract(settings_engine(url), ["customers", "orders"], TODAY, settings.tz, 90)
    report = run_gate(frames, TODAY, day_end_utc(TODAY, settings.tz))
    failed = {(r.dataset, r.column, r.check) for r in report.failures}
    assert ("orders", "status", "not_all_null") in failed, report.failure_text()


def settings_engine(url: str):
    from shopmail.db import get_engine

    return get_engine(url)


@pytest.fixture
def cli_shop(shop: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", _copy(shop, tmp_path, "DROP TABLE carts"))
    monkeypatch.setenv("SHOPMAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SHOPMAIL_MAX_ORDER_AGE_DAYS", "0")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    get_settings.cache_clear()
    registry.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_piped_and_json_output_is_complete(cli_shop: Path) -> None:
    from shopmail.cli import app

    runner = CliRunner()
    names = sorted(registry())
    listed = json.loads(runner.invoke(app, ["campaigns", "--format", "json"]).stdout)
    assert sorted(c["name"] for c in listed) == names and all("enabled" in c for c in listed)
    table = runner.invoke(app, ["campaigns"]).output  # piped: never cut at 80 columns
    assert all(name in table for name in names) and "…" not in table

    checked = runner.invoke(app, ["check-shop", "--format", "json", "--as-of", TODAY.isoformat()])
    result = json.loads(checked.stdout)
    assert checked.exit_code == 1 and sorted(c["name"] for c in result["campaigns"]) == names
    (blocked,) = [c for c in result["campaigns"] if not c["can_run"]]
    assert (
        blocked["name"] == "abandoned_cart"
        and blocked["stage"] == "datasets"
        and blocked["dataset"] == "carts"
    )
    assert result["as_of"] == TODAY.isoformat() and result["currencies"] == {
        "RUB": result["currencies"]["RUB"]
    }
    shown = runner.invoke(app, ["check-shop", "--as-of", TODAY.isoformat()]).output
    assert all(name in shown for name in names) and "…" not in shown

    state = state_db.upgrade(get_settings().state_url_resolved)
    state_db.start_run(state, "run-with-a-long-id-0001", "followup_detailed", TODAY, True)
    history = json.loads(runner.invoke(app, ["history", "--format", "json"]).stdout)
    (run,) = history["runs"]
    assert run["campaign"] == "followup_detailed" and run["run_id"] == "run-with-a-long-id-0001"
    assert history["coupons_waiting"] == {} and history["in_doubt"] == {}
