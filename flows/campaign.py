"""The generic campaign flow: runs any campaign of the registry through the full pipeline.

extract -> validate (GX gate) -> select (segment + arbitrate) -> preflight render ->
[approval if the audience is anomalous] -> send in batches (ledger, exactly once) -> record.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, State
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from pydantic import Field
from sqlalchemy import Engine

from config.settings import Settings, TaskRunnerKind, get_settings
from flows.ab_test import send_campaign
from flows.forms import (
    DATE_FIELD,
    RESUME_FIELD,
    bounded_int,
    campaign_dropdown,
    campaign_id,
    segment_dropdown,
    segment_id,
    segment_titles,
)
from flows.run_names import campaign_run_name, runtime_name
from flows.steps import SendNotApproved, TemplateCheckFailed, check_data, count_from_ledger
from segments.rules import segment_names
from segments.segment_snapshot import SNAPSHOT_DIR, write_segment_snapshot
from shopmail.campaigns import Campaign, campaign_names, get_campaign
from shopmail.db import get_engine, private_dir
from shopmail.redaction import install_log_redaction
from shopmail.run.interrupt import StopRequested, stop_on_signals
from shopmail.run.pipeline import Selection
from shopmail.run.run_report import RunReport
from shopmail.shop.contract import DATASETS
from shopmail.shop.extract import missing_datasets
from shopmail.state import ledger, state_db
from tasks.extract import extract_shop_data
from tasks.record import record_run
from tasks.select_recipients import select_recipients_task
from tasks.shop_coupons import restore_shop_coupons

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
    resume_of: Annotated[str | None, RESUME_FIELD] = None,
) -> RunReport | State:
    """Run one campaign of the registry for one day.

    Args:
        campaign: The campaign to run.
        as_of: The shop day to run for (shop time zone); empty = today. A past day catches it up.
        dry_run: Choose and render the mails, send nothing: the report shows how many would be sent.
        limit: Send to at most this many customers (the others get it on the next run); empty = all.
        segment: Only customers of this segment; empty = the campaign's usual segment.
        preapproved: Send even an unusually large audience without pausing for approval.
        resume_of: Set by the recovery step: finish only the open mails of this stopped run.

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
    refusal = rejected_before(state, run_id)
    if refusal:  # Retry in the UI on a rejected run: never a send without a new approval
        get_run_logger().warning("%s", refusal)
        return Cancelled(message=refusal)
    started = {"segment": chosen, "limit": limit, **({"resume_of": resume_of} if resume_of else {})}
    state_db.start_run(state, run_id, spec.name, day, dry_run, started)
    report = RunReport(run_id=run_id, campaign=spec.name, as_of=day, dry_run=dry_run, segment=chosen)
    # the process beats the summary while it lives: a run killed now is closed and finished by recovery;
    # a first SIGTERM/SIGINT stops new requests and ends the run `interrupted` (shopmail/run/interrupt.py)
    with state_db.RunHeartbeat(state, run_id, settings.claim_lease_seconds / 3), stop_on_signals():
        try:
            return _run_campaign(
                spec, day, report, settings, state, dry_run, limit, chosen, preapproved, resume_of
            )
        except BaseException as exc:  # never leave the summary `running`: close it with what happened
            close_unfinished(state, report, exc)
            raise


def rejected_before(state: Engine, run_id: str) -> str:
    """Why this flow run must not run again, if an earlier attempt of it was not approved (a rejected
    run retried from the Prefect UI): the decision stands; a new run asks for approval again."""
    earlier = state_db.get_run(state, run_id)
    if earlier is None or earlier["status"] != "rejected":
        return ""
    approval = (earlier.get("details") or {}).get("approval") or "not approved"
    return (
        f"This run was not approved ({approval}) and a retry does not change that: nothing sent. "
        "To send, start a new run of the campaign: it asks for approval again."
    )


def _run_campaign(
    spec: Campaign,
    day: date,
    report: RunReport,
    settings: Settings,
    state: Engine,
    dry_run: bool,
    limit: int | None,
    chosen: str | None,
    preapproved: bool,
    resume_of: str | None,
) -> RunReport | State:
    """The campaign flow's work once its run summary is open (see `campaign_flow`)."""
    run_id = report.run_id
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
    if spec.coupon is not None and not dry_run:  # coupons mailed earlier that the shop lost: back in
        report.outcomes["coupons_restored"] = restore_shop_coupons(spec)
    frames, quarantined_ids = check_data(frames, state, report)
    selection = select_recipients_task(spec, frames, day, quarantined_ids, segment=chosen)
    private_dir(settings.data_dir / SNAPSHOT_DIR)  # customer ids and values: owner only (0700)
    write_segment_snapshot(settings.data_dir, run_id, selection.segment_snapshot)  # `shopmail why`
    leftover: list[str] = []
    if resume_of:  # a recovery: exactly the stopped run's open mails that are still due
        selection, leftover = restrict_to_open_mails(selection, state, resume_of)
        limit = None
    try:
        send_campaign(  # as the campaign file says: plainly, or as its A/B test
            spec,
            selection,
            frames,
            report,
            settings,
            state,
            dry_run=dry_run,
            limit=limit,
            preapproved=preapproved or bool(resume_of),
            reselect=lambda: reselect_recipients(
                spec, frames, day, quarantined_ids, chosen, state, resume_of
            ),
        )
    except SendNotApproved as exc:  # a decision, not a failure: Cancelled, one line, no traceback
        get_run_logger().warning("%s", exc)
        return Cancelled(message=str(exc))
    if leftover and not dry_run:
        closed = ledger.close_unsent(
            state, leftover, resume_of or "", f"occasion no longer due on {day} when run {run_id} resumed it"
        )
        if closed:
            get_run_logger().warning(
                "%d open mails of the stopped run are no longer due (the customer left the audience or "
                "the occasion passed): closed as expired, not sent",
                closed,
            )
    if not dry_run:
        publish_results_so_far(spec.name, state)
    get_run_logger().info("%s", report.sentence())
    return report


def reselect_recipients(
    spec: Campaign,
    frames: dict,
    day: date,
    quarantined_ids: set[int],
    segment: str | None,
    state: Engine,
    resume_of: str | None,
) -> Selection:
    """The recipients selected afresh (an A/B test's winner phase), cut to the stopped run's open mails
    when this run finishes one (`resume_of`)."""
    selection = select_recipients_task(spec, frames, day, quarantined_ids, segment=segment)
    return restrict_to_open_mails(selection, state, resume_of)[0] if resume_of else selection


def close_unfinished(state: Engine, report: RunReport, exc: BaseException) -> None:
    """A run that ends by an exception its steps did not record: its summary gets `interrupted` (a stop
    signal) or `failed`, with the ledger's counts and the reason, unless a step recorded it already."""
    if isinstance(exc, StopRequested | KeyboardInterrupt):
        status, why = "interrupted", str(exc) or "stopped by a signal"
    else:
        status, why = "failed", f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        report.problem = report.problem or why
        if isinstance(exc, StopRequested):
            report.interrupted_by = exc.signal_name
        count_from_ledger(report, state)
        state_db.finish_if_running(state, report.run_id, status, report.counts(), report.details())


def restrict_to_open_mails(selection: Selection, state: Engine, run_id: str) -> tuple[Selection, list[str]]:
    """The selection cut to what the stopped run `run_id` left to send: its open mails, and the mails
    no run ever claimed (the batches it never reached: a stop or a kill leaves them out of the ledger);
    and the open mails it does not select any more (their occasion is over)."""
    open_keys = {row["message_key"] for row in ledger.open_rows(state, run_id)}
    keys = selection.eligible["message_key"].astype(str)
    known = ledger.statuses(state, [k for k in keys if k not in open_keys])
    wanted = keys.isin(open_keys) | ~keys.isin(known)
    eligible = selection.eligible[wanted]
    kept = Selection(selection.audience_size, eligible, selection.skipped, selection.segment_snapshot)
    return kept, sorted(open_keys - set(eligible["message_key"]))


def publish_results_so_far(campaign: str, state) -> None:
    """The campaign's last runs and what their mails did so far (artifact `history-<campaign>`); a
    failure here is logged, never fails the run that sent."""
    from flows.campaign_history import publish_history

    try:
        publish_history(state, campaign)
    except Exception as exc:  # noqa: BLE001 - reporting must not fail a send
        get_run_logger().warning("could not publish the results so far: %s", exc)


def configured_campaign_flow(settings: Settings | None = None):
    """The campaign flow with the task runner the settings ask for (processes use every core
    for rendering; threads avoid process start-up for small runs; dask spreads one campaign's
    batches over a Dask cluster)."""
    settings = settings or get_settings()
    if settings.task_runner == TaskRunnerKind.threads:  # bounded: Prefect's default is a thread per batch
        return campaign_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=settings.send_threads))
    if settings.task_runner == TaskRunnerKind.processes:
        return campaign_flow.with_options(task_runner=ProcessPoolTaskRunner(max_workers=settings.workers))
    if settings.task_runner == TaskRunnerKind.dask:
        return campaign_flow.with_options(task_runner=dask_task_runner(settings))
    return campaign_flow  # pragma: no cover - every kind is handled above


def dask_task_runner(settings: Settings):
    """Prefect's Dask task runner: on the cluster at `dask_address` (its workers bring the project and
    their own SHOPMAIL_* environment; the settings refuse SQLite there), else on a local cluster of
    `workers` processes started for the run (they inherit this process's environment)."""
    from prefect_dask import DaskTaskRunner  # distributed is a heavy import: only when asked for

    from shopmail.run.dask_timeouts import configure

    configure()  # connection timeouts that survive a busy machine (the flow's client side)
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
