"""The marketer's cockpit in a real browser: Debian's Chromium (driven by Playwright) on a real Prefect
server's UI with `shopmail serve`. Opens a deployment's run form, picks a segment by its title,
submits a dry run and reads the artifact; then rejects a paused send in the run's Resume dialog
(Approve left off, a note typed, Submit) and checks the run ends Cancelled, not Failed, with nothing sent.

Screenshots (the form, the artifact, the resume dialog, the cancelled run) go to
tests/artifacts/browser/ (ignored by git); with SHOPMAIL_DOC_SCREENSHOTS=1 the documentation's three
(docs/images/) are replaced by this run's.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from tests.browser import CHROMIUM, CHROMIUM_ARGS, final_run, need_chromium, reject_in_resume_dialog
from tests.conftest import FEEDBACK_ORIGIN
from tests.prefect_server import (
    PrefectServer,
    log_tail,
    running_prefect_server,
    sendgrid_serve_env,
    shopmail_serve,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.flow]
AS_OF = date(2026, 11, 27)  # a Friday: new_arrivals has an audience
SHOTS = Path(__file__).resolve().parent / "artifacts" / "browser"
DOC_SHOTS = ("1-run-form.png", "2-dry-run-artifact.png", "3-resume-dialog.png")
DOC_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
DOC_SCREENSHOTS = os.environ.get("SHOPMAIL_DOC_SCREENSHOTS") == "1"  # read before the fixtures clear it


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[PrefectServer]:
    need_chromium()
    with running_prefect_server(tmp_path, ui=True) as server:
        yield server


def _artifact(api: str, run_id: str, key: str) -> dict:
    found = httpx.post(
        f"{api}/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "flow_runs": {"id": {"any_": [run_id]}}},
        timeout=10,
    ).json()
    assert found, f"no artifact {key} for run {run_id}"
    return found[0]


def _set_form_default(api: str, dep: dict, name: str, value: str, serve, log: Path) -> None:
    """Set a deployment parameter (the run form's starting value) and read it back: a busy SQLite
    Prefect server can refuse a write ("database is locked"), and an unchecked PATCH then leaves the
    form on its old default (seen in CI: the dry run went out for today instead of the demo's day)."""

    def written() -> bool | None:
        params = {**dep["parameters"], name: value}
        reply = httpx.patch(f"{api}/deployments/{dep['id']}", json={"parameters": params}, timeout=10)
        if reply.status_code >= 400:
            return None
        now = httpx.get(f"{api}/deployments/{dep['id']}", timeout=10).json()["parameters"]
        return True if now.get(name) == value else None

    wait_for(written, 60, f"the deployment's {name} set to {value}", serve, log)


def test_marketer_runs_a_dry_run_from_the_form_and_rejects_a_send(
    ui_server: PrefectServer, settings: Settings, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    api, base = ui_server.url, ui_server.url.removesuffix("/api")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    generate_demo_shop(settings.shop_url_resolved, customers=600, seed=5, today=AS_OF)
    with running_sink() as sink:
        env = sendgrid_serve_env(ui_server, tmp_path, settings.data_dir, sink.url)
        env.update(SHOPMAIL_SERVE_ONLY="new_arrivals", SHOPMAIL_APPROVAL_MAX_AUDIENCE="10")
        log = tmp_path / "serve.log"
        with shopmail_serve(env, log) as serve:

            def deployment() -> dict | None:
                found = httpx.get(f"{api}/deployments/name/campaign/new_arrivals", timeout=5)
                return found.json() if found.status_code == 200 else None

            dep = wait_for(deployment, 120, "serve", serve, log)
            # the shop day of the demo data as the form's starting value (as a marketer would pick it)
            _set_form_default(api, dep, "as_of", AS_OF.isoformat(), serve, log)

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                page.goto(f"{base}/deployments/deployment/{dep['id']}/run")
                page.get_by_text("Segment (Optional)").wait_for(timeout=60_000)
                form_text = page.inner_text("form")
                assert "Property is type" not in form_text and "None" not in form_text
                assert "Shop day" in form_text and "Campaign" not in form_text  # the deployment's own
                segment = page.locator(".p-select.schema-form-property-input .p-select-button__control")
                segment.focus()
                page.keyboard.press("ArrowDown")  # opens the dropdown: the segments by title
                options = page.get_by_role("option")
                options.first.wait_for(timeout=30_000)
                offered = options.all_inner_texts()
                assert "Женщины" in offered and "women" not in offered  # titles, not ids
                assert "VIP" not in offered  # reads orders, which new_arrivals does not extract
                page.screenshot(path=str(SHOTS / "0-segment-dropdown.png"), full_page=True)
                page.get_by_role("option", name="Женщины", exact=True).click()
                page.screenshot(path=str(SHOTS / "1-run-form.png"), full_page=True)
                assert "Женщины" in page.inner_text("form")
                page.get_by_role("button", name="Submit").click()
                page.wait_for_url(
                    re.compile(rf".*/deployments/deployment/{dep['id']}(\?.*)?$"), timeout=60_000
                )

                def submitted() -> str | None:
                    runs = httpx.post(
                        f"{api}/flow_runs/filter",
                        json={"deployments": {"id": {"any_": [dep["id"]]}}},
                        timeout=5,
                    ).json()
                    return runs[0]["id"] if runs else None

                run_id = wait_for(submitted, 60, "the run submitted from the form", serve, log)
                assert (
                    httpx.get(f"{api}/flow_runs/{run_id}", timeout=5).json()["parameters"]["segment"]
                    == "Женщины"
                )
                run = final_run(api, run_id)
                assert run["state_type"] == "COMPLETED", log_tail(log)
                named = f"new_arrivals-women-{AS_OF.isoformat()}-dry-run"  # not a random name
                assert run["name"] == named, (run["parameters"], log_tail(log))
                report = _artifact(api, run_id, "campaign-new-arrivals")
                page.goto(f"{base}/artifacts/artifact/{report['id']}")
                page.get_by_text("Would send").first.wait_for(timeout=60_000)
                shown = page.inner_text("body")
                page.screenshot(path=str(SHOTS / "2-dry-run-artifact.png"), full_page=True)
                assert "Segment:" in shown and "Женщины (women)" in shown and "Would send:" in shown
                mail = _artifact(api, run_id, "mail-new-arrivals")["data"]  # the HTML behind a signed link
                assert f"[open the mail]({FEEDBACK_ORIGIN}/preview/" in mail and "&sig=" in mail

                # a real send above the approval limit pauses; the marketer rejects it
                started = httpx.post(
                    f"{api}/deployments/{dep['id']}/create_flow_run",
                    json={"parameters": {"dry_run": False}},
                    timeout=10,
                )
                assert started.status_code == 201, started.text
                send_id = started.json()["id"]
                wait_for(
                    lambda: (
                        httpx.get(f"{api}/flow_runs/{send_id}", timeout=5).json()["state_type"] == "PAUSED"
                    ),
                    180,
                    "pause for approval",
                    serve,
                    log,
                )
                # the marketer rejects it in the UI: Resume, leave Approve off, type a note, Submit
                note = "too many, check the segment"
                page.goto(f"{base}/flow-runs/flow-run/{send_id}")
                try:
                    reject_in_resume_dialog(page, note, SHOTS / "3-resume-dialog.png")
                except Exception:
                    page.screenshot(path=str(SHOTS / "failed-resume-dialog.png"), full_page=True)
                    (SHOTS / "failed-resume-dialog.html").write_text(page.content(), encoding="utf-8")
                    raise

                rejected = final_run(api, send_id)
                assert rejected["state_type"] == "CANCELLED", log_tail(log)  # a decision, not a failure
                page.goto(f"{base}/flow-runs/flow-run/{send_id}")
                page.get_by_text("Cancelled").first.wait_for(timeout=60_000)
                page.screenshot(path=str(SHOTS / "4-rejected-run.png"), full_page=True)
                report = _artifact(api, send_id, "campaign-new-arrivals")
                assert "too many, check the segment" in report["data"] and "not approved" in report["data"]
                logs = httpx.post(
                    f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [send_id]}}}, timeout=10
                ).json()
                text = "\n".join(entry["message"] for entry in logs)
                assert "Traceback" not in text and "Finished in state Completed()" not in text, text
                assert "Data checks found: in customers," in text and "{'" not in text, text  # a sentence
                browser.close()
    print(f"\nscreenshots: {SHOTS}")
    assert not list(sink.store.messages)  # nothing was sent
    if DOC_SCREENSHOTS:  # the marketer's guide shows this run's screens
        for name in DOC_SHOTS:
            shutil.copyfile(SHOTS / name, DOC_IMAGES / name)
