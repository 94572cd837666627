"""`shopmail segment` and `shopmail why` on a small demo shop (no Prefect needed)."""

from __future__ import annotations

import re
from datetime import date

import pytest
from typer.testing import CliRunner

from config.settings import Settings
from segments.segment_snapshot import write_segment_snapshot
from shopmail.campaigns import get_campaign
from shopmail.cli import app
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.mailer.base import SendResult
from shopmail.run.pipeline import select_recipients
from shopmail.shop.extract import extract
from shopmail.state import ledger, state_db

DAY = "2026-11-23"
AS_OF = date(2026, 11, 23)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from shopmail import cli

    monkeypatch.setattr(cli, "console", Console(width=220))


@pytest.fixture
def shop(settings: Settings) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=5, today=AS_OF)
    return settings


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_segment_list_and_preview(shop: Settings) -> None:
    listed = _invoke("segment", "--list")
    assert listed.exit_code == 0, listed.output
    for name in ("women", "vip", "loyal", "electronics_buyers", "moscow"):
        assert re.search(rf"│ {name}\s", listed.output), name
    assert _invoke("segment").output == listed.output  # no name: the list

    women = _invoke("segment", "women", "--as-of", DAY, "--sample", "5")
    assert women.exit_code == 0, women.output
    assert 'gender = "f"' in women.output
    found = re.search(
        r"As of 2026-11-23: ([\d,]+) of 1,500 customers \(([\d.]+)%\), ([\d,]+) with marketing", women.output
    )
    assert found, women.output
    size = int(found.group(1).replace(",", ""))
    assert 600 < size < 1000 and abs(float(found.group(2)) - 100 * size / 1500) < 0.06
    assert "Sample of 5" in women.output and "@" not in women.output  # PII-light: no addresses
    rows = [line for line in women.output.splitlines() if re.match(r"│ \d+ ", line)]
    assert len(rows) == 5

    loyal = _invoke("segment", "loyal", "--as-of", DAY, "--sample", "3")
    assert loyal.exit_code == 0, loyal.output
    assert re.search(r"(champions|loyal)", loyal.output.split("Sample")[1])

    none = _invoke("segment", "vip", "--as-of", DAY, "--sample", "0")
    assert none.exit_code == 0 and "Sample" not in none.output

    unknown = _invoke("segment", "nope")
    assert unknown.exit_code == 2 and "unknown segment 'nope'" in unknown.output


def test_why_explains_a_sent_sale_mail(shop: Settings) -> None:
    settings = shop
    campaign = get_campaign("sale")
    frames = extract(
        get_engine(settings.shop_url_resolved), campaign.datasets, AS_OF, settings.tz, campaign.history_days
    )
    state = state_db.upgrade(settings.state_url_resolved)
    selection = select_recipients(campaign, frames, AS_OF, settings, state, set(), segment="vip")
    assert len(selection.eligible) > 0
    state_db.start_run(state, "run-cli", "sale", AS_OF, False)
    write_segment_snapshot(settings.data_dir, "run-cli", selection.segment_snapshot)
    first = selection.eligible.iloc[0]
    claim = ledger.claim(
        state,
        [ledger.LedgerEntry("sale", first["occasion_key"], int(first["customer_id"]))],
        "run-cli",
        "memory",
    )
    ledger.mark(state, [SendResult(claim.keys[0], "sent", "msg-1")])
    customer = str(int(first["customer_id"]))

    by_run = _invoke("why", customer, "--run", "run-cli")
    assert by_run.exit_code == 0, by_run.output
    assert "Segment: vip (VIP)" in by_run.output and "outcome: chosen to get the mail" in by_run.output
    assert re.search(r"✓ total_spend ≥ 150,000   \(total_spend: [\d,]+\)", by_run.output)
    assert "sent: sale:black_friday_2026" in by_run.output and "provider id msg-1" in by_run.output

    by_campaign = _invoke("why", customer, "--campaign", "sale")
    assert by_campaign.exit_code == 0 and by_campaign.output == by_run.output
    # by campaign, customer and day: the run is named by what it was, never by its id
    by_day = _invoke("why", customer, "--campaign", "sale", "--day", AS_OF.isoformat())
    assert by_day.exit_code == 0 and by_day.output == by_run.output
    assert f"the sale run for {AS_OF} (send), started" in by_day.output and "run-cli" not in by_day.output
    other_day = _invoke("why", customer, "--campaign", "sale", "--day", "2020-01-01")
    assert other_day.exit_code == 1 and "No 'sale' run for 2020-01-01" in other_day.output

    never = _invoke("why", "1", "--campaign", "wakeup")
    assert never.exit_code == 1 and "No 'wakeup' run" in never.output
    assert _invoke("why", "1").exit_code == 2
