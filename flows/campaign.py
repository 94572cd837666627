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
from prefect.states import Cancelled, State
from prefect.task_runners import ProcessPoolTaskRunner
from pydantic import Field

from config.settings import Settings, TaskRunnerKind, get_settings
from flows.forms import (
    DATE_FIELD,
    bounded_int,
    campaign_dropdown,
    campaign_id,
    segment_dropdown,
    segment_id,
    segment_titles,
)
from flows.run_names import campaign_run_name, runtime_name
from flows.steps import SendNotApproved, TemplateCheckFailed, check_data, send_selection
from segments.rules import segment_names
from segments.segment_snapshot import SNAPSHOT_DIR, write_segment_snapshot
from shopmail.campaigns import campaign_names, get_campaign
from shopmail.db import get_engine, private_dir
from shopmail.redaction import install_log_redaction
from shopmail.run.run_report import RunReport
from shopmail.shop.contract import DATASETS
from shopmail.shop.extract import missing_datasets
from shopmail.state import state_db
from tasks.extract import extract_shop_data
from tasks.record import record_run
from tasks.select_recipients import select_recipients_task

__all__ = ["CampaignName", "SegmentName", "TemplateCheckFailed", "campaign_flow", "configured_campaign_flow"]

CampaignName = StrEnum("CampaignName", {name: name for name in campaign_names()})
SegmentName = StrEnum("SegmentName", {name: name for name in ["all", *segment_names()]})


def today_in_shop() -> date:
    return datetime.now(get_settings().tz).date()


def _run_name() -> str:
    """`<campaign>[-<segment>]-<day>-<send|dry-run>` (flows/run_names.py: the same name the run got
    while it waited); a name typed in the run form is kept."""
    return runtime_name(campaign_run_name)


@flow(name="campaign", flow_run_name=_run_name, log_prints=True)
def campaign_flow(
    campaign: Annotated[str, campaign_dropdown()],
    as_of: Annotated[date | None, DATE_FIELD] = None,
    dry_run: bool = False,
    limit: Annotated[int | None, Field(ge=1, le=10_000_000), bounded_int(1, 10_000_000)] = None,
    segment: Annotated[str | None, segment_dropdown()] = None,
    preapproved: bool = False,
) -> RunReport | State:
    """Run one campaign of the registry for one day.

    Args:
        campaign: The campaign to run.
        as_of: The shop day to run for (shop time zone); empty = today. A past day catches it up.
        dry_run: Choose and render the mails, send nothing: the report shows how many would be sent.
        limit: Send to at most this many customers (the others get it on the next run); empty = all.
        segment: Only customers of this segment; empty = the campaign's usual segment.
        preapproved: Send even an unusually large audience without pausing for approval.

    A rejected (or unanswered) approval ends the run Cancelled, with nothing sent.
    """
    settings = get_settings()
    install_log_redaction(settings)  # no coupon code, token or secret in this run's logs
    spec = get_campaign(campaign_id(campaign))
    day = as_of or today_in_shop()
    picked = segment_id(segment)
    chosen = spec.segment if picked is None else picked
    run_id = str(flow_run.id or uuid.uuid4())
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.start_run(state, run_id, spec.name, day, dry_run)
    report = RunReport(run_id=run_id, campaign=spec.name, as_of=day, dry_run=dry_run, segment=chosen)
    report.segment_title = segment_titles().get(chosen or "", "")

    lacking = [
        d
        for d in missing_datasets(get_engine(settings.shop_url_resolved), spec.datasets)
        if DATASETS[d].optional
    ]
    if lacking:  # an optional dataset the shop does not have: this campaign cannot run, nothing failed
        report.problem = (
            f"skipped: the shop has no {', '.join(lacking)} table or view, which {spec.name} needs "
            "(`shopmail check-shop`; switch the campaign off with SHOPMAIL_DISABLED_CAMPAIGNS)"
        )
        record_run(report, "skipped")
        get_run_logger().warning("%s: %s", spec.name, report.problem)
        return report
    frames = extract_shop_data(spec, day)
    frames, quarantined_ids = check_data(frames, state, report)
    selection = select_recipients_task(spec, frames, day, quarantined_ids, segment=chosen)
    private_dir(settings.data_dir / SNAPSHOT_DIR)  # customer ids and values: owner only (0700)
    write_segment_snapshot(settings.data_dir, run_id, selection.segment_snapshot)  # `shopmail why`
    try:
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
    except SendNotApproved as exc:  # a decision, not a failure: Cancelled, one line, no traceback
        get_run_logger().warning("%s", exc)
        return Cancelled(message=str(exc))
    get_run_logger().info("%s", report.sentence())
    return report


def configured_campaign_flow(settings: Settings | None = None):
    """The campaign flow with the task runner the settings ask for (processes use every core
    for rendering; threads avoid process start-up for small runs; dask spreads one campaign's
    batches over a Dask cluster)."""
    settings = settings or get_settings()
    if settings.task_runner == TaskRunnerKind.processes:
        return campaign_flow.with_options(task_runner=ProcessPoolTaskRunner(max_workers=settings.workers))
    if settings.task_runner == TaskRunnerKind.dask:
        return campaign_flow.with_options(task_runner=dask_task_runner(settings))
    return campaign_flow


def dask_task_runner(settings: Settings):
    """Prefect's Dask task runner: on the cluster at `dask_address` (its workers bring the project and
    their own SHOPMAIL_* environment; the settings refuse SQLite there), else on a local cluster of
    `workers` processes started for the run (they inherit this process's environment)."""
    from prefect_dask import DaskTaskRunner  # distributed is a heavy import: only when asked for

    address = (settings.dask_address or "").strip()
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": settings.workers,
            "threads_per_worker": 1,  # a batch renders on one core; its requests have their own threads
            "processes": True,
            "dashboard_address": None,  # no fixed port 8787 to collide on (and bokeh is not installed)
        },
    )
