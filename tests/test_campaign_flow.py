"""The generic campaign flow end to end under a real Prefect test server, on the SQLite demo shop."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import date
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select

from config.settings import Settings
from segments.holdout import in_holdout
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.state import state_db
from shopmail.state.schema import quarantined_rows, run_summaries, send_ledger
from tests.shop_oracle import expected_wakeup

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)


@pytest.fixture
def demo_shop(settings: Settings) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=2000, seed=7, today=AS_OF)
    return settings


def _ledger(settings: Settings) -> list:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        return conn.execute(select(send_ledger)).all()


def _held_out(expected: dict[int, int]) -> set[int]:
    """The wake-up audience's random holdout (config/campaigns/wakeup.toml): recorded, never mailed."""
    ids = sorted(expected)
    mask = in_holdout("wakeup", ids, get_campaign("wakeup").holdout_percent)
    return {c for c, held in zip(ids, mask, strict=True) if held}


def _outbox(settings: Settings) -> list[Path]:
    return sorted(settings.outbox_path.glob("*.eml")) if settings.outbox_path.exists() else []


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_wakeup_sends_the_right_people_once(prefect_harness, demo_shop: Settings) -> None:
    from flows.campaign import campaign_flow

    expected = expected_wakeup(get_engine(demo_shop.shop_url_resolved), AS_OF, holdout=False)
    assert len(expected) >= 5, "the demo shop must give the wake-up campaign an audience"
    held = _held_out(expected)
    mailed = len(expected) - len(held)

    report = campaign_flow(campaign="wakeup", as_of=AS_OF)
    counts = report.counts()
    assert counts["sent"] == mailed and counts["holdout"] == len(held)
    rows = _ledger(demo_shop)
    assert {r.customer_id for r in rows} == set(expected)
    assert {r.occasion_key.split(":order:")[1] for r in rows} == {str(o) for o in expected.values()}
    assert {r.customer_id for r in rows if r.status == "holdout"} == held
    assert all(r.status == "sent" and r.provider_message_id for r in rows if r.customer_id not in held)

    files = _outbox(demo_shop)
    assert len(files) == mailed
    mail = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert "utm_campaign=wakeup" in html and "utm_source=shopmail" in text
    assert mail["List-Unsubscribe"].startswith("<https://") and "token=" in mail["List-Unsubscribe"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "дней назад" in text or "days ago" in text

    # the demo data has broken addresses: they are quarantined and reported, not mailed
    state = state_db.upgrade(demo_shop.state_url_resolved)
    with state.connect() as conn:
        quarantined = conn.execute(select(quarantined_rows.c.row_key)).scalars().all()
        summary = conn.execute(select(run_summaries)).one()
    assert counts["quarantined"] == len(quarantined) > 0
    assert (summary.status, summary.sent, summary.audience) == (
        "completed",
        mailed,
        counts["audience"],
    )

    # same campaign, same day: nothing new goes out
    again = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    assert again["sent"] == 0
    assert again["skipped"] >= len(expected)  # held-out customers count as done too
    assert len(_outbox(demo_shop)) == mailed
    assert len(_ledger(demo_shop)) == len(expected)


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_run_leaves_readable_artifacts(prefect_harness, demo_shop: Settings) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.campaign import campaign_flow

    report = campaign_flow(campaign="wakeup", as_of=AS_OF, dry_run=True)

    async def of_this_run() -> list:  # the session's Prefect server holds other tests' wakeup artifacts
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["campaign-wakeup"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(report.run_id)]),
                ),
            )

    artifacts = asyncio.run(of_this_run())
    markdown = next(a.data for a in artifacts if str(report.as_of) in a.data and "dry run" in a.data)
    assert f"| audience (campaign rule and segment) | {report.audience} |" in markdown
    assert (
        f"**Would send: {report.eligible:,}**" in markdown
        and f"| would send | {report.eligible} |" in markdown
    )
    assert "**Segment:**" in markdown and "Full mail (HTML): artifact `mail-wakeup`" in markdown
    assert "## Sample mail" in markdown and "**Subject:**" in markdown
    assert "## Data checks" in markdown
    assert "token=…" in markdown and "token=" not in markdown.replace("token=…", "")


def test_dry_run_sends_and_records_nothing_in_the_ledger(prefect_harness, demo_shop: Settings) -> None:
    from flows.campaign import campaign_flow

    report = campaign_flow(campaign="wakeup", as_of=AS_OF, dry_run=True)
    assert report.eligible > 0 and report.outcomes["would_send"] == report.eligible
    assert report.sample is not None and report.sample.subject
    assert _outbox(demo_shop) == [] and _ledger(demo_shop) == []


def test_limit_caps_the_send_and_the_rest_goes_next_time(prefect_harness, demo_shop: Settings) -> None:
    from flows.campaign import campaign_flow

    first = campaign_flow(campaign="wakeup", as_of=AS_OF, limit=3).counts()
    assert first["sent"] == 3
    second = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    assert second["sent"] == first["eligible"] - 3
    assert len(_outbox(demo_shop)) == first["eligible"]


def test_failed_data_check_stops_before_any_send(prefect_harness, demo_shop: Settings) -> None:
    from flows.campaign import campaign_flow
    from tasks.validate import DataCheckFailed

    shop = get_engine(demo_shop.shop_url_resolved)
    with shop.begin() as conn:
        conn.exec_driver_sql("UPDATE customers SET email = 'not-an-address' WHERE id % 5 = 0")
    with pytest.raises(DataCheckFailed, match="customers.email"):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert _outbox(demo_shop) == [] and _ledger(demo_shop) == []
    [run] = state_db.recent_runs(state_db.upgrade(demo_shop.state_url_resolved), "wakeup")
    assert run["status"] == "blocked" and "nothing sent" in run["details"]["problem"]


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_broken_template_stops_before_any_send(
    prefect_harness, demo_shop: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import get_settings
    from flows.campaign import TemplateCheckFailed, campaign_flow

    templates = tmp_path / "templates"
    shutil.copytree(demo_shop.templates_dir, templates)
    body = templates / "wakeup" / "ru" / "body.html.j2"
    body.write_text(body.read_text(encoding="utf-8").replace("{{ order_id }}", "{{ order.number }}"))
    monkeypatch.setenv("SHOPMAIL_TEMPLATES_DIR", str(templates))
    get_settings.cache_clear()
    with pytest.raises(TemplateCheckFailed, match="wakeup/ru"):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert _outbox(demo_shop) == [] and _ledger(demo_shop) == []


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_suppressed_customers_are_skipped(prefect_harness, demo_shop: Settings) -> None:
    from flows.campaign import campaign_flow

    expected = expected_wakeup(get_engine(demo_shop.shop_url_resolved), AS_OF, holdout=False)
    held = _held_out(expected)
    victim = min(set(expected) - held)
    shop = get_engine(demo_shop.shop_url_resolved)
    with shop.connect() as conn:
        email = conn.exec_driver_sql(f"SELECT email FROM customers WHERE id = {victim}").scalar_one()
    state_db.add_suppression(
        state_db.upgrade(demo_shop.state_url_resolved), email.upper(), "unsubscribe", "test"
    )
    report = campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert report.skipped.get("suppressed") == 1
    assert victim not in {r.customer_id for r in _ledger(demo_shop)}
    assert report.counts()["sent"] == len(expected) - len(held) - 1


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_task_count_grows_with_batches_not_recipients(
    prefect_harness, demo_shop: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from config.settings import get_settings
    from flows.campaign import campaign_flow

    monkeypatch.setenv("SHOPMAIL_SEND_BATCH_SIZE", "7")
    get_settings.cache_clear()
    report = campaign_flow(campaign="wakeup", as_of=AS_OF)

    async def task_runs() -> list:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(report.run_id)]))
            )

    runs = asyncio.run(task_runs())
    batches = -(-report.eligible // 7)
    assert report.counts()["sent"] == report.eligible > 7
    assert len(runs) == 4 + batches  # extract, validate, select, record + one per batch
    assert sum(r.name.startswith("send-batch") for r in runs) == batches


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_one_click_unsubscribe_from_a_sent_mail_is_honoured_next_run(
    prefect_harness, demo_shop: Settings
) -> None:
    import httpx

    from flows.campaign import campaign_flow
    from shopmail.web.feedback_app import running_feedback_app

    first = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    mail = BytesParser(policy=policy.default).parsebytes(_outbox(demo_shop)[0].read_bytes())
    link = mail["List-Unsubscribe"].split(",")[0].strip().strip("<>")  # the https URI, then mailto:
    token = link.split("token=", 1)[1]
    with running_feedback_app(demo_shop) as app:
        response = httpx.post(
            f"{app.url}/unsubscribe",
            params={"token": token},
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    again = campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert again.skipped.get("unsubscribed") == 1
    assert again.counts()["sent"] == 0 and first["sent"] > 0


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_process_task_runner_sends_the_same(prefect_harness, demo_shop: Settings, monkeypatch) -> None:
    from config.settings import get_settings
    from flows.campaign import configured_campaign_flow

    monkeypatch.setenv("SHOPMAIL_TASK_RUNNER", "processes")
    monkeypatch.setenv("SHOPMAIL_SEND_BATCH_SIZE", "10")
    get_settings.cache_clear()
    expected = expected_wakeup(get_engine(demo_shop.shop_url_resolved), AS_OF, holdout=False)
    held = _held_out(expected)
    report = configured_campaign_flow()(campaign="wakeup", as_of=AS_OF)
    assert report.counts()["sent"] == len(expected) - len(held)
    assert {r.customer_id for r in _ledger(demo_shop)} == set(expected)  # sent + holdout rows
    assert len(_outbox(demo_shop)) == len(expected) - len(held)
