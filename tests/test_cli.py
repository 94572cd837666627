"""The `shopmail` command line, in-process against the Prefect test server."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from config.settings import Settings
from shopmail.cli import app
from shopmail.db import get_engine
from tests.shop_oracle import expected_wakeup

pytestmark = pytest.mark.flow
DAY = "2026-11-23"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from shopmail import cli

    monkeypatch.setattr(cli, "console", Console(width=200))


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_demo_data_run_preview_history(prefect_harness, settings: Settings, tmp_path) -> None:
    from datetime import date

    made = _invoke("demo-data", "--customers", "1500", "--seed", "3", "--today", DAY)
    assert made.exit_code == 0, made.output
    assert re.search(r"customers\s*│\s*1,500", made.output)

    expected = expected_wakeup(get_engine(settings.shop_url_resolved), date(2026, 11, 23))
    customer = min(expected)
    preview_html = tmp_path / "preview.html"
    shown = _invoke(
        "preview", "wakeup", "--customer", str(customer), "--as-of", DAY, "--html", str(preview_html)
    )
    assert shown.exit_code == 0, shown.output
    assert "Subject:" in shown.output and "List-Unsubscribe-Post" in shown.output
    assert f"№{expected[customer]}" in shown.output or f"#{expected[customer]}" in shown.output
    assert "utm_campaign=wakeup" in preview_html.read_text(encoding="utf-8")

    nobody = next(i for i in range(1, 1500) if i not in expected)
    missing = _invoke("preview", "wakeup", "--customer", str(nobody), "--as-of", DAY)
    assert missing.exit_code == 1 and "gets no 'wakeup' mail" in missing.output

    ran = _invoke("run", "wakeup", "--as-of", DAY)
    assert ran.exit_code == 0, ran.output
    assert re.search(rf"sent\s*│\s*{len(expected)}\b", ran.output)
    assert len(list(settings.outbox_path.glob("*.eml"))) == len(expected)

    history = _invoke("history", "wakeup")
    assert history.exit_code == 0 and "completed" in history.output and DAY in history.output

    listed = _invoke("campaigns")
    assert "wakeup" in listed.output and "0 11 * * *" in listed.output


def test_unknown_campaign_is_a_clear_error(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["run", "nope"])
    assert result.exit_code != 0
    assert "unknown campaign 'nope'" in str(result.exception)
