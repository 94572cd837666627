"""`shopmail demo`: shop days through the local SendGrid server and the real feedback app, an A/B
test, shoppers ordering after clicks, and a results report with numbers."""

from __future__ import annotations

import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

import flows.campaign  # noqa: F401 - its run form is built now, from the shipped campaigns
from config.settings import Settings, get_settings
from shopmail.devtools.demo_loop import AB_CAMPAIGN
from shopmail.state import ab_tests, state_db

pytestmark = pytest.mark.flow


def test_demo_runs_the_loop_and_reports_what_the_mails_did(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shopmail import cli

    monkeypatch.setattr(cli, "console", Console(width=200))
    monkeypatch.delenv("SHOPMAIL_SENDER_EMAIL")  # the shipped From address: the demo uses its own
    get_settings.cache_clear()
    shown = CliRunner().invoke(
        cli.app, ["demo", "--customers", "1500", "--days", "1"], catch_exceptions=False
    )
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "What the demo's mails did" in text and "machine opens" in text
    sent = {
        name: int(count.replace(",", ""))
        for name, count in re.findall(r"│ (\w+)\s+│ ([\d,]+)\s+│", shown.output)
    }
    assert sent.get(AB_CAMPAIGN, 0) > 200 and len(sent) > 5  # the A/B test and the schedule's campaigns
    (test,) = ab_tests.recent_tests(state_db.upgrade(get_settings().state_url_resolved), AB_CAMPAIGN)
    assert test["status"] == "done" and test["decision"]["sentence"] in text
    assert "orders after clicks" in text and "what the mails caused" in text
    assert "SHOPMAIL_CAMPAIGNS_DIR" not in __import__("os").environ  # the demo's settings were its own
