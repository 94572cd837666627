"""Connecting a real shop: the documented contract, `check-shop`, a gate that bends where real data
does, optional datasets and campaigns a shop switches off (issue 13, "the contract that bends")."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import create_engine

from shopmail.campaigns import Campaign, disabled_reason, is_enabled, registry
from shopmail.shop.check_shop import check_shop
from shopmail.shop.contract import DATASETS, ContractError, DatasetMissing, contract_markdown
from shopmail.shop.data_checks import run_gate
from shopmail.shop.extract import NEWEST_ORDER, extract, missing_datasets

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 3, 15)
MSK = ZoneInfo("Europe/Moscow")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    from shopmail.devtools.demo_shop import generate_demo_shop

    path = tmp_path_factory.mktemp("shop") / "shop.sqlite"
    generate_demo_shop(f"sqlite:///{path}", customers=120, seed=3, today=TODAY)
    return path


def _copy(shop: Path, tmp_path: Path, *sql: str) -> str:
    target = tmp_path / "copy.sqlite"
    target.write_bytes(shop.read_bytes())
    with sqlite3.connect(target) as conn:
        for statement in sql:
            conn.execute(statement)
    return f"sqlite:///{target}"


def test_every_contract_column_is_documented_and_optional_ones_have_a_default() -> None:
    for dataset in DATASETS.values():
        for column in dataset.columns:
            assert column.meaning and column.null and column.type, (dataset.name, column.name)
    assert DATASETS["orders"].column("currency").required is False
    assert DATASETS["coupons"].optional and DATASETS["password_resets"].optional
    markdown = contract_markdown()
    assert (
        "#### `password_resets` (optional dataset)" in markdown
        and "| `in_stock` | boolean | optional" in markdown
    )


def test_documented_contract_tables_match_the_contract() -> None:
    """The data-contract page's tables are `contract_markdown()` between the markers (never hand-edited)."""
    page = (ROOT / "docs" / "connect" / "data-contract.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- contract:start -->\n(.*?)<!-- contract:end -->", page, re.S)
    assert found is not None, "docs/connect/data-contract.md lost its <!-- contract:start/end --> block"
    assert found.group(1) == contract_markdown()


def test_a_view_without_optional_columns_reads_their_defaults(shop: Path, tmp_path: Path) -> None:
    url = _copy(
        shop,
        tmp_path,
        "ALTER TABLE products DROP COLUMN in_stock",
        "ALTER TABLE products DROP COLUMN url",
        "ALTER TABLE customers DROP COLUMN discount_card",
    )
    frames = extract(
        create_engine(url), ["customers", "products"], TODAY, MSK, 30, product_url="https://s.example/p/{id}"
    )
    products = frames["products"]
    assert products["in_stock"].eq(True).all() and products.attrs["defaulted"] == ["url", "in_stock"]
    assert products["url"].iloc[0] == f"https://s.example/p/{int(products['id'].iloc[0])}"
    assert frames["customers"]["discount_card"].isna().all()


def test_a_missing_required_column_or_dataset_is_named(shop: Path, tmp_path: Path) -> None:
    url = _copy(shop, tmp_path, "ALTER TABLE orders DROP COLUMN total", "DROP TABLE password_resets")
    with pytest.raises(ContractError, match=r"`orders.total`"):
        extract(create_engine(url), ["orders"], TODAY, MSK, 30)
    with pytest.raises(DatasetMissing, match="password_resets"):
        extract(create_engine(url), ["customers", "password_resets"], TODAY, MSK, 30)
    assert missing_datasets(create_engine(url), ["customers", "password_resets"]) == ["password_resets"]


def _customers(languages: list[str | None]) -> pd.DataFrame:
    n = len(languages)
    return pd.DataFrame(
        {
            "id": range(1, n + 1),
            "email": [f"c{i}@mail.example" for i in range(n)],
            "gender": ["f"] * n,
            "registered_at": pd.to_datetime(["2026-01-01"] * n),
            "language": languages,
        }
    )


def test_language_tags_are_normalised_and_unknown_ones_fall_back(shop: Path, tmp_path: Path) -> None:
    url = _copy(
        shop,
        tmp_path,
        "UPDATE customers SET language = 'ru-RU' WHERE id % 3 = 0",
        "UPDATE customers SET language = 'en_gb' WHERE id % 3 = 1",
        "UPDATE customers SET language = 'de' WHERE id % 10 = 2",  # ~10 %: not a failure
    )
    frames = extract(create_engine(url), ["customers", "products"], TODAY, MSK, 30)
    assert set(frames["customers"]["language"].dropna()) <= {"ru", "en", "de"}
    gate = run_gate(frames, TODAY)
    assert gate.success, gate.failure_text()
    known = next(r for r in gate.results if r.check == "language_known")
    assert known.unexpected > 0 and "'de'" in known.message and "allowed: ru, en" in known.message
    assert any(r.check == "language_normalised" and "'ru-RU'" in r.message for r in gate.results)


def test_small_tables_free_shipping_and_messages_that_name_the_values() -> None:
    coupons = pd.DataFrame(
        {
            "code": ["A", "B", "C", "D", "E"],
            "customer_id": [1] * 5,
            "kind": ["coupon", "coupon", "bonus", "coupon", "gift"],  # 1 of 5 bad: set aside, no stop
            "value": [0.0, 100.0, 50.0, 5.0, 10.0],  # 0: free shipping, valid
        }
    )
    gate = run_gate({"customers": _customers(["ru"]), "coupons": coupons})
    assert gate.success and gate.quarantined_keys("coupons") == {"E"}
    kind = next(r for r in gate.results if r.column == "kind")
    assert "found 'gift' (1)" in kind.message and "allowed: coupon, bonus" in kind.message
    many = pd.concat([coupons] * 4, ignore_index=True).assign(code=[f"K{i}" for i in range(20)])
    many["kind"] = ["gift"] * 6 + ["coupon"] * 14
    failed = run_gate({"customers": _customers(["ru"]), "coupons": many})
    assert not failed.success and "found 'gift' (6)" in failed.failure_text()


def test_zero_dates_are_null_and_reported_all_null_times_stop(shop: Path, tmp_path: Path) -> None:
    url = _copy(shop, tmp_path, "UPDATE customers SET registered_at = '0000-00-00 00:00:00' WHERE id = 1")
    frames = extract(create_engine(url), ["customers", "products"], TODAY, MSK, 30)
    gate = run_gate(frames, TODAY)
    assert gate.success, gate.failure_text()
    assert any(r.check == "zero_date_as_null" and r.unexpected == 1 for r in gate.results)
    broken = frames["customers"].assign(registered_at=pd.NaT)
    blocked = run_gate({**frames, "customers": broken}, TODAY)
    assert not blocked.success and "CONVERT_TZ" in blocked.failure_text()


def test_orders_all_null_stale_or_in_the_future_stop_the_run(shop: Path, tmp_path: Path) -> None:
    until, now = dt.datetime(2026, 3, 15, 21), dt.datetime(2026, 3, 15, 12)
    url = _copy(  # a view whose CONVERT_TZ returns NULL (MariaDB without time-zone tables)
        shop,
        tmp_path,
        "ALTER TABLE orders RENAME TO orders_raw",
        "CREATE VIEW orders AS SELECT id, customer_id, status, NULL AS created_at, total FROM orders_raw",
    )
    frames = extract(create_engine(url), ["customers", "orders"], TODAY, MSK, 30)
    assert frames["orders"].empty
    gate = run_gate(frames, TODAY, until, now=now, max_order_age_days=14)
    assert not gate.success and "NULL in all" in gate.failure_text()

    orders = frames["orders"].copy()
    orders.attrs.update({NEWEST_ORDER: dt.datetime(2026, 1, 1), "latest_order": dt.datetime(2026, 1, 1)})
    stale = run_gate({**frames, "orders": orders}, TODAY, until, now=now, max_order_age_days=14)
    assert "days old" in stale.failure_text()
    orders.attrs.update(
        {NEWEST_ORDER: dt.datetime(2026, 3, 15, 11), "latest_order": dt.datetime(2026, 3, 15, 15)}
    )
    future = run_gate({**frames, "orders": orders}, TODAY, until, now=now, max_order_age_days=14)
    assert "in the future" in future.failure_text()


def test_check_shop_reports_gaps_and_which_campaigns_cannot_run(shop: Path, tmp_path: Path) -> None:
    url = _copy(
        shop,
        tmp_path,
        "DROP TABLE password_resets",
        "UPDATE customers SET gender = 'x' WHERE id < 4",
        "ALTER TABLE orders DROP COLUMN tracking_number",
    )
    engine = create_engine(url)
    specs = dict(registry())
    enabled = {name: name != "name_day" for name in specs}
    result = check_shop(engine, specs, enabled, dt.datetime(2026, 3, 15, 12), coupon_table="coupons")
    verdicts = {c.name: c for c in result.campaigns}
    assert (
        not verdicts["password_reminder"].can_run
        and "password_resets" in verdicts["password_reminder"].reasons[0]
    )
    assert verdicts["wakeup"].can_run and not result.ok  # an enabled campaign cannot run: exit non-zero
    assert not verdicts["name_day"].enabled
    gender = next(
        c for d in result.datasets if d.name == "customers" for c in d.columns if c.name == "gender"
    )
    assert gender.outside == {"x": 3} and gender.allowed == ["f", "m"]
    assert result.coupons_writable is True and result.newest_order is not None
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:  # the probe left nothing behind
        assert (
            conn.execute("SELECT count(*) FROM coupons WHERE code LIKE 'SHOPMAIL-CHECK-%'").fetchone()[0] == 0
        )
    assert json.loads(json.dumps(result.to_dict(), default=str))["ok"] is False


def test_check_shop_cli_json_and_exit_code(shop: Path, tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from config.settings import get_settings
    from shopmail.cli import app

    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", _copy(shop, tmp_path, "DROP TABLE carts"))
    monkeypatch.setenv("SHOPMAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SHOPMAIL_MAX_ORDER_AGE_DAYS", "0")
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(app, ["check-shop", "--json"])
        assert shown.exit_code == 1, shown.output
        data = json.loads(shown.output)
        assert [c["name"] for c in data["campaigns"] if not c["can_run"]] == ["abandoned_cart"]
        monkeypatch.setenv("SHOPMAIL_DISABLED_CAMPAIGNS", "abandoned_cart,holiday")
        get_settings.cache_clear()
        ok = CliRunner().invoke(app, ["check-shop"])
        assert ok.exit_code == 0, ok.output
        refused = CliRunner().invoke(app, ["run", "holiday", "--dry-run"])
        assert refused.exit_code == 2 and "SHOPMAIL_DISABLED_CAMPAIGNS" in refused.output
    finally:
        get_settings.cache_clear()


def test_enabled_false_and_the_settings_overrides() -> None:
    spec = registry()["name_day"]
    off = Campaign(**{**spec.model_dump(), "enabled": False})
    assert is_enabled(spec) and not is_enabled(spec, disabled=["name_day"])
    assert not is_enabled(off) and is_enabled(off, enabled=["name_day"])
    assert not is_enabled(off, disabled=["name_day"], enabled=["name_day"])  # disabled wins
    assert "SHOPMAIL_DISABLED_CAMPAIGNS" in disabled_reason(spec, disabled=["name_day"])


def test_the_poller_skips_only_campaigns_whose_dataset_is_missing(shop: Path, tmp_path: Path) -> None:
    from flows.service_poller import polled_campaigns, runnable

    engine = create_engine(_copy(shop, tmp_path, "DROP TABLE password_resets"))
    kept, skipped = runnable(polled_campaigns(), engine)
    assert list(skipped) == ["password_reminder"] and "password_resets" in skipped["password_reminder"]
    assert {"welcome", "order_shipped"} <= {c.name for c in kept}
