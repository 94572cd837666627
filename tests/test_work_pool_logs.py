"""One logging set-up on the production path, seen by the marketer: after `shopmail deploy`, a real
process work pool's runs log like `shopmail serve`'s (config/logging.yml through the deployments' job
variables). In Debian's Chromium on the Prefect UI, a send is rejected in its Resume dialog (which
names no reason code); the run ends Cancelled and its log page shows no ERROR line and no traceback;
a dry run of an ended sale says on its page why it sends nothing. Neither log carries the engine's
routine lines (per-task "Finished in state Completed()", the pull step's lines)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from shopmail.devtools.demo_shop import generate_demo_shop
from tests.browser import CHROMIUM, CHROMIUM_ARGS, final_run, need_chromium, reject_in_resume_dialog
from tests.prefect_server import ROOT, _spawn, log_tail, running_prefect_server, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.flow]
FRIDAY = date(2026, 11, 27)  # new_arrivals has an audience (tests/test_approval.py)
AFTER_SALE = date(2026, 12, 7)  # config/campaigns/sale.toml: the sale's last day is 2026-11-30
ROUTINE = ("Finished in state Completed(", "deployment pull step", "Executing deployment step")
LOG_BATCH_S = 5  # over Prefect's log batch interval (2 s): lines after the final state have arrived
SHOTS = Path(__file__).resolve().parent / "artifacts" / "work-pool"


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def _start(api: str, deployment: str, parameters: dict) -> str:
    target = httpx.get(f"{api}/deployments/name/{deployment}", timeout=10).json()
    started = httpx.post(
        f"{api}/deployments/{target['id']}/create_flow_run", json={"parameters": parameters}, timeout=10
    )
    assert started.status_code == 201, started.text
    return started.json()["id"]


def _logs(api: str, run_id: str) -> list[dict]:
    return httpx.post(
        f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}}, timeout=10
    ).json()


def _log_page(page, base: str, run_id: str, waits_for: str) -> str:
    """The run's page in the UI (its Logs tab) once `waits_for` is on it: the page's text."""
    page.goto(f"{base}/flow-runs/flow-run/{run_id}")
    page.get_by_text(waits_for, exact=False).first.wait_for(timeout=90_000)
    return page.inner_text("body")


def _shown(logs: list[dict]) -> str:
    return "\n".join(f"{entry['level']} {entry['name']}: {entry['message']}" for entry in logs)


def test_a_process_work_pool_logs_decisions_as_sentences(settings: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    need_chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    generate_demo_shop(settings.shop_url_resolved, customers=600, seed=5, today=FRIDAY)
    with running_prefect_server(tmp_path, ui=True) as server:
        api, base = server.url, server.url.removesuffix("/api")
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp_path / "cli-home"),
            "SHOPMAIL_PROJECT_DIR": str(ROOT),
            "SHOPMAIL_APPROVAL_MAX_AUDIENCE": "10",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }
        env.pop("PREFECT_LOGGING_SETTINGS_PATH", None)  # the deployments must bring it themselves
        _cli(["-m", "prefect", "work-pool", "create", "shopmail", "--type", "process"], env)
        _cli(["-m", "shopmail.cli", "deploy", "--prefect-file", str(ROOT / "prefect.yaml")], env)
        worker_log = tmp_path / "worker.log"
        worker = _spawn(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "shopmail", "--type", "process"],
            env,
            worker_log,
        )
        try:
            wait_for(lambda: "started" in worker_log.read_text().lower(), 120, "worker", worker, worker_log)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1400})

                # a real send above the approval limit pauses on the pool; the marketer rejects it
                send_id = _start(
                    api, "campaign/new_arrivals", {"as_of": FRIDAY.isoformat(), "dry_run": False}
                )
                wait_for(
                    lambda: (
                        httpx.get(f"{api}/flow_runs/{send_id}", timeout=5).json()["state_type"] == "PAUSED"
                    ),
                    240,
                    "pause for approval",
                    worker,
                    worker_log,
                )
                page.goto(f"{base}/flow-runs/flow-run/{send_id}")
                reject_in_resume_dialog(page, "too many for a Friday", SHOTS / "resume-dialog.png")
                rejected = final_run(api, send_id)
                wait_for(  # its last line; an engine error would come after it, within a log batch
                    lambda: "Finished in state Cancelled" in _shown(_logs(api, send_id)),
                    60,
                    "the rejected run's last log line",
                    worker,
                    worker_log,
                )
                time.sleep(LOG_BATCH_S)
                rejected_page = _log_page(page, base, send_id, "Send not approved")
                page.screenshot(path=str(SHOTS / "rejected-run.png"), full_page=True)

                # a dry run of a sale that has ended: its page says why nothing would be sent
                dry_id = _start(api, "campaign/sale", {"as_of": AFTER_SALE.isoformat(), "dry_run": True})
                ended = final_run(api, dry_id)
                ended_page = _log_page(page, base, dry_id, "Nothing to send")
                page.screenshot(path=str(SHOTS / "ended-sale.png"), full_page=True)
                browser.close()
            rejected_logs, ended_logs = _logs(api, send_id), _logs(api, dry_id)
        finally:
            stop(worker)

    shown = _shown(rejected_logs)
    assert rejected["state_type"] == "CANCELLED", f"{rejected['state']}\n{shown}\n{log_tail(worker_log)}"
    assert "Send not approved, nothing sent" in shown and "too many for a Friday" in shown, shown
    assert not [r for r in rejected_logs if r["level"] >= 40], shown  # no ERROR for a decision
    assert "Traceback" not in shown and "CancelledRun" not in shown, shown
    assert not [r for r in rejected_logs if any(line in r["message"] for line in ROUTINE)], shown
    # what the marketer reads on the run's page
    assert "too many for a Friday" in rejected_page, rejected_page
    assert "ERROR" not in rejected_page and "Traceback" not in rejected_page, rejected_page

    said = _shown(ended_logs)
    assert ended["state_type"] == "COMPLETED", f"{ended['state']}\n{said}\n{log_tail(worker_log)}"
    assert "Nothing to send: the sale ended on 2026-11-30" in said, said
    assert not [r for r in ended_logs if r["level"] >= 40] and "Traceback" not in said, said
    assert not [r for r in ended_logs if any(line in r["message"] for line in ROUTINE)], said
    assert "the sale ended on 2026-11-30" in ended_page, ended_page
    assert "ERROR" not in ended_page and "Traceback" not in ended_page, ended_page
