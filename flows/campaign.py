"""The generic campaign flow: runs any campaign of the registry through the full pipeline.

extract -> validate (GX gate) -> select (segment + arbitrate) -> preflight render ->
[approval if the audience is anomalous] -> send in batches (ledger, exactly once) -> record.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner
from pydantic import Field

from config.settings import Settings, TaskRunnerKind, get_settings
from flows.steps import TemplateCheckFailed, check_data, plain_params, send_selection
from segments.rules import segment_names
from segments.segment_snapshot import write_segment_snapshot
from shopmail.campaigns import campaign_names, get_campaign
from shopmail.run.run_report import RunReport
from shopmail.state import state_db
from tasks.extract import extract_shop_data
from tasks.select_recipients import select_recipients_task

__all__ = ["CampaignName", "SegmentName", "TemplateCheckFailed", "campaign_flow", "configured_campaign_flow"]

CampaignName = StrEnum("CampaignName", {name: name for name in campaign_names()})
SegmentName = StrEnum("SegmentName", {name: name for name in ["all", *segment_names()]})


def today_in_shop() -> date:
    return datetime.now(get_settings().tz).date()


def _run_name() -> str:
    params = flow_run.parameters
    mode = "dry-run" if params.get("dry_run") else "send"
    as_of = params.get("as_of") or today_in_shop().isoformat()
    segment = f"-{plain_params(params['segment'])}" if params.get("segment") else ""
    return f"{plain_params(params.get('campaign'))}{segment}-{as_of}-{mode}"


@flow(name="campaign", flow_run_name=_run_name, log_prints=True)
def campaign_flow(
    campaign: CampaignName,  # type: ignore[valid-type]
    as_of: date | None = None,
    dry_run: bool = False,
    limit: Annotated[int | None, Field(ge=1, le=10_000_000)] = None,
    segment: SegmentName | None = None,  # type: ignore[valid-type]
    preapproved: bool = False,
) -> RunReport:
    """Run one campaign of the registry for one day.

    Args:
        campaign: The campaign to run (config/campaigns/).
        as_of: The shop day to run for (shop time zone); empty = today. A past day backfills it.
        dry_run: Select and render only: nothing is sent, nothing is written to the send ledger.
        limit: Send to at most this many recipients (the rest go on the next run).
        segment: Only customers of this segment (config/segments.toml); empty = the campaign's
            default; `all` = everyone the campaign picks.
        preapproved: Skip the pause for approval of an unusually large audience.
    """
    settings = get_settings()
    spec = get_campaign(str(plain_params(campaign)))
    day = as_of or today_in_shop()
    chosen = plain_params(segment) or spec.segment
    run_id = str(flow_run.id or uuid.uuid4())
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.start_run(state, run_id, spec.name, day, dry_run)
    report = RunReport(run_id=run_id, campaign=spec.name, as_of=day, dry_run=dry_run, segment=chosen)

    frames = extract_shop_data(spec, day)
    frames, quarantined_ids = check_data(frames, state, report)
    selection = select_recipients_task(spec, frames, day, quarantined_ids, segment=chosen)
    write_segment_snapshot(settings.data_dir, run_id, selection.segment_snapshot)  # `shopmail why`
    send_selection(
        spec,
        selection,
        frames,
        report,
        settings,
        state,
        dry_run=dry_run,
        limit=limit,
        preapproved=preapproved,
    )
    get_run_logger().info("%s: %s", report.title(), report.counts())
    return report


def configured_campaign_flow(settings: Settings | None = None):
    """The campaign flow with the task runner the settings ask for (processes use every core
    for rendering; threads avoid process start-up for small runs)."""
    settings = settings or get_settings()
    if settings.task_runner == TaskRunnerKind.processes:
        return campaign_flow.with_options(task_runner=ProcessPoolTaskRunner(max_workers=settings.workers))
    return campaign_flow
