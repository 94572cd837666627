"""Debian's Chromium driven by Playwright for the browser tests: the launch settings, and the
marketer's moves on a real Prefect UI (wait for a run to end, reject a paused send in its Resume
dialog) shared by the `serve` and the work-pool tests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from shopmail.run.vocabulary import snake_codes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REASON_CODES = ("frequency_cap", "no_consent", "already_sent", "invalid_email", "duplicate_address")


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")


def final_run(api: str, run_id: str, timeout_s: float = 240) -> dict:
    """The flow run once it is in a final state (a dict from the REST API)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish")


def reject_in_resume_dialog(page, note: str, screenshot: Path) -> str:
    """On a paused run's page: Resume, check the dialog shows the approval request in words (no
    reason code, a sample mail) with Approve off, type `note`, keep a screenshot, Submit.
    The dialog's text."""
    page.get_by_role("button", name="Resume").first.click(timeout=60_000)
    dialog = page.locator(".p-modal").filter(has_text="Resume Flow Run")
    dialog.get_by_text("Approve", exact=False).first.wait_for(timeout=60_000)
    shown = dialog.inner_text()
    assert "Why this needs approval" in shown and "Note" in shown, shown
    # words, not codes (shopmail/run/vocabulary.py), and the sample mail's subject and first lines
    for code in REASON_CODES:
        assert code not in shown, shown
    assert not snake_codes(shown), (snake_codes(shown), shown)
    assert "Sample mail" in shown and "Subject:" in shown, shown
    approve = dialog.locator("input[type=checkbox]")
    assert approve.count() == 1 and not approve.is_checked()  # left off: reject
    dialog.locator("input[type=text], textarea").first.fill(note)
    page.screenshot(path=str(screenshot), full_page=True)
    dialog.get_by_role("button", name="Submit").click()
    return shown
