"""Guard rail: an anomalous mass/occasion/trigger audience pauses the run for approval in the Prefect UI."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from sqlalchemy import select

from config.settings import Settings, get_settings
from shopmail.campaigns import CampaignKind
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.approval import needs_approval
from shopmail.state import state_db
from shopmail.state.schema import run_summaries, send_ledger

AS_OF = date(2026, 11, 27)  # a Friday: new_arrivals has an audience


@pytest.mark.parametrize(
    ("kind", "eligible", "history", "needed"),
    [
        (CampaignKind.mass, 5000, [1000, 1100, 900], True),  # > 3x median 1000
        (CampaignKind.mass, 2900, [1000, 1100, 900], False),
        (CampaignKind.occasion, 5000, [1000], True),
        (CampaignKind.mass, 400, [10, 12], False),  # below the minimum audience
        (CampaignKind.mass, 5000, [], False),  # no history: only the absolute limit applies
        (CampaignKind.trigger, 50_000, [10], True),  # a trigger far above its usual daily rate
        (CampaignKind.service, 50_000, [10], False),  # service mails never pause
        (CampaignKind.mass, 0, [10], False),
    ],
)
def test_needs_approval_compares_with_the_median(kind, eligible, history, needed) -> None:
    decision = needs_approval(kind, eligible, history, factor=3, min_audience=500, max_audience=None)
    assert decision.needed is needed
    if needed:
        assert "median" in decision.reason


def test_absolute_limit_always_asks() -> None:
    decision = needs_approval(CampaignKind.mass, 101, [], factor=3, min_audience=500, max_audience=100)
    assert decision.needed and "above the limit of 100" in decision.reason


@pytest.fixture
def guarded_shop(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=600, seed=5, today=AS_OF)
    monkeypatch.setenv("SHOPMAIL_APPROVAL_MAX_AUDIENCE", "10")
    get_settings.cache_clear()
    return get_settings()


def _run_in_thread(**params) -> tuple[threading.Thread, dict]:
    from flows.campaign import campaign_flow

    outcome: dict = {}

    def target() -> None:
        try:
            outcome["report"] = campaign_flow(campaign="new_arrivals", as_of=AS_OF, **params)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _paused_run(timeout_s: float = 90):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                )
            )
            if runs:
                return runs[0]
            time.sleep(0.5)
    raise AssertionError("the run never paused for approval")


def _sent(settings: Settings) -> int:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        return len(conn.execute(select(send_ledger).where(send_ledger.c.status == "sent")).all())


def test_rejected_send_sends_nothing_and_says_why(prefect_harness, guarded_shop: Settings) -> None:
    from prefect.flow_runs import resume_flow_run

    thread, outcome = _run_in_thread()
    paused = _paused_run()
    assert paused.name.startswith("new_arrivals-2026-11-27-send")
    resume_flow_run(paused.id, run_input={"approve": False, "note": "too many, check the segment"})
    thread.join(120)
    from prefect.exceptions import CancelledRun

    # a decision, not a failure: the run ends Cancelled (no traceback), with the note in the report
    assert isinstance(outcome.get("error"), CancelledRun) and "Send not approved" in str(outcome["error"])
    assert _sent(guarded_shop) == 0
    state = state_db.upgrade(guarded_shop.state_url_resolved)
    with state.connect() as conn:
        row = conn.execute(select(run_summaries).where(run_summaries.c.campaign == "new_arrivals")).one()
    assert row.status == "rejected" and "too many" in row.details["approval"]

    # Retry in the UI on the rejected run (the same flow run again), even asking to skip approval:
    # it refuses, Cancelled, nothing sent; only a new run (which asks again) can send
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    from flows.campaign import campaign_flow

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(paused.id, AwaitingRetry(), force=True)
        again = client.read_flow_run(paused.id)
    retried = run_flow(
        campaign_flow,
        flow_run=again,
        parameters={"campaign": "new_arrivals", "as_of": AS_OF, "preapproved": True},
        return_type="state",
    )
    assert retried.is_cancelled() and "asks for approval again" in (retried.message or ""), retried
    assert _sent(guarded_shop) == 0


def test_approved_send_goes_out(prefect_harness, guarded_shop: Settings) -> None:
    from prefect.flow_runs import resume_flow_run

    thread, outcome = _run_in_thread()
    paused = _paused_run()
    resume_flow_run(paused.id, run_input={"approve": True, "note": "Black Friday, expected"})
    thread.join(120)
    report = outcome["report"]
    assert report.eligible > 10 and _sent(guarded_shop) == report.eligible
    assert "approved: Black Friday" in report.approval


def test_preapproved_and_dry_runs_do_not_pause(prefect_harness, guarded_shop: Settings) -> None:
    from flows.campaign import campaign_flow

    dry = campaign_flow(campaign="new_arrivals", as_of=AS_OF, dry_run=True)
    assert dry.eligible > 10 and _sent(guarded_shop) == 0
    report = campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
    assert _sent(guarded_shop) == report.eligible > 10
