"""Scheduled means scheduled: on a real Prefect server, the server's own scheduler creates the
service poller's run from its cron, `shopmail serve` runs it, and the mails reach the local SendGrid
server. Nothing here creates a run: a scheduler that fails (Prefect 3.8 with SQLAlchemy 2.1:
"Can't evaluate bulk DML statement" in `schedule_deployments`) fails this test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from config.settings import Settings
from shopmail.devtools.demo_shop import SHOP_TZ, generate_demo_shop
from shopmail.devtools.sendgrid_sink import MESSAGE_KEY_ARG, running_sink
from shopmail.state.schema import send_ledger
from tests.prefect_server import (
    PrefectServer,
    log_tail,
    running_prefect_server,
    sendgrid_serve_env,
    shopmail_serve,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.flow]
POLL_CRON = "* * * * *"  # every minute: the first scheduled run is due within a minute of serving
SCHEDULED_RUN_TIMEOUT_S = 150  # the scheduler creates runs within seconds of a deployment's creation
COMPLETED_TIMEOUT_S = 240  # due time (<= 60 s) + runner poll (10 s) + the poll itself
FIRST_LOOKBACK_MIN = 2 * 1440  # the first poll reads the demo shop's whole "today" (<= 30 h back)
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """A real Prefect server on a loopback port with its own PREFECT_HOME and SQLite DB."""
    with running_prefect_server(tmp_path) as server:
        yield server


def _flow_runs(api: httpx.Client, deployment_id: str | None = None) -> list[dict[str, Any]]:
    """Flow runs on the server (of one deployment, or all), earliest expected start first."""
    body: dict[str, Any] = {"sort": "EXPECTED_START_TIME_ASC", "limit": 200}
    if deployment_id:
        body["flow_runs"] = {"deployment_id": {"any_": [deployment_id]}}
    response = api.post("/flow_runs/filter", json=body)
    response.raise_for_status()
    return response.json()


def _by_scheduler(run: dict[str, Any]) -> bool:
    """Created by the server's scheduler from a deployment schedule (not by a client)."""
    created_by = run.get("created_by") or {}
    return run["auto_scheduled"] is True and created_by.get("type") == "SCHEDULE"


def _scheduler_errors(server: PrefectServer) -> str:
    """The server log's error lines (e.g. the scheduler failing), for assertion messages."""
    lines = server.log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if "| ERROR" in line or "Error:" in line]
    return "\n".join(dict.fromkeys(errors[-12:])) or log_tail(server.log)  # each message once


def test_the_scheduler_itself_creates_and_runs_the_service_poller(
    prefect_server: PrefectServer, settings: Settings, tmp_path: Path
) -> None:
    started = time.monotonic()
    # The demo shop's "now" is its `today` 06:00 shop time, its service events (registrations, order
    # status changes, password resets) lie between 00:10 and then: pick the day whose 06:00 is at most
    # 24 h ago, so every event is in the past and inside the first poll's window.
    shop_day = (datetime.now(SHOP_TZ) - timedelta(hours=6)).date()
    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=5, today=shop_day)

    with running_sink() as sink, httpx.Client(base_url=prefect_server.url, timeout=10) as api:
        env = sendgrid_serve_env(prefect_server, tmp_path, settings.data_dir, sink.url) | {
            "SHOPMAIL_SERVE_ONLY": "service-poller",
            "SHOPMAIL_POLL_CRON": POLL_CRON,
            "SHOPMAIL_POLL_FIRST_LOOKBACK_MINUTES": str(FIRST_LOOKBACK_MIN),
        }
        log = tmp_path / "serve.log"
        with shopmail_serve(env, log) as serve:

            def served() -> dict[str, Any] | None:
                response = api.get("/deployments/name/service-poller/service-poller")
                return response.json() if response.status_code == 200 else None

            deployment = wait_for(served, 120, "shopmail serve registers service-poller", serve, log)
            served_at = time.monotonic()
            assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [POLL_CRON]
            assert deployment["schedules"][0]["active"] is True

            def scheduled_run() -> dict[str, Any] | None:
                return next(iter(_flow_runs(api, deployment["id"])), None)

            try:
                first = wait_for(
                    scheduled_run, SCHEDULED_RUN_TIMEOUT_S, "a run created by the scheduler", serve, log
                )
            except AssertionError as exc:
                raise AssertionError(
                    f"the Prefect scheduler created no run of service-poller in "
                    f"{SCHEDULED_RUN_TIMEOUT_S} s; server errors:\n{_scheduler_errors(prefect_server)}"
                ) from exc
            scheduled_at = time.monotonic()
            assert _by_scheduler(first), first
            assert first["created_by"]["id"] == deployment["schedules"][0]["id"]  # this very schedule
            assert "auto-scheduled" in first["tags"] and first["idempotency_key"].startswith("scheduled ")

            def finished() -> dict[str, Any] | None:
                run = api.get(f"/flow_runs/{first['id']}").json()
                return run if run["state_type"] in FINAL_STATES else None

            run = wait_for(finished, COMPLETED_TIMEOUT_S, "the scheduled run finishing", serve, log)
            completed_at = time.monotonic()
        # serve stopped: no run starts any more
        every_run = _flow_runs(api)

    assert run["state_type"] == "COMPLETED", f"{run['state_type']}: {run['state']}\n{log_tail(log)}"
    assert run["start_time"] is not None and run["auto_scheduled"] is True
    # the test created no run: every run on the server is the scheduler's, of the poller's deployment
    assert every_run and all(_by_scheduler(r) for r in every_run), [
        (r["name"], r["auto_scheduled"], r["created_by"]) for r in every_run if not _by_scheduler(r)
    ]
    assert {r["deployment_id"] for r in every_run} == {deployment["id"]}

    # the poll's mails reached the SendGrid server, exactly those the ledger records as sent
    with create_engine(settings.state_url_resolved).connect() as conn:
        ledger = conn.execute(
            select(send_ledger.c.message_key, send_ledger.c.campaign).where(send_ledger.c.status == "sent")
        ).all()
    received = sink.store.key_counts(MESSAGE_KEY_ARG)
    assert received, f"no mail reached the SendGrid server\n{log_tail(log)}"
    assert max(received.values()) == 1  # no mail twice
    assert set(received) == {key for key, _ in ledger} and sum(received.values()) == len(ledger)
    assert {campaign for _, campaign in ledger} >= {"welcome"}  # registrations of the demo "today"
    print(
        f"\nserve registered after {served_at - started:.0f} s; scheduler's run seen after "
        f"{scheduled_at - served_at:.0f} s (due {first['expected_start_time']}); completed after "
        f"{completed_at - scheduled_at:.0f} s; {len(ledger)} mails; {len(every_run)} run(s), "
        "all by the scheduler"
    )
