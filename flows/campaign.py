"""The generic campaign flow: runs any campaign of the registry through the full pipeline.

extract -> validate (GX gate) -> select (segment + arbitrate) -> preflight render ->
send in batches (ledger, exactly once) -> record (run summary + artifacts).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from prefect import flow, get_run_logger, unmapped
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner
from pydantic import Field

from config.settings import Settings, TaskRunnerKind, get_settings
from shopmail import state_db
from shopmail.campaigns import campaign_names, get_campaign
from shopmail.pipeline import MailComposer, Selection, product_lookup
from shopmail.rendering import TemplateError
from shopmail.run_report import RunReport
from tasks.extract import extract_shop_data
from tasks.record import record_run
from tasks.select_recipients import select_recipients_task
from tasks.send import SendingPaused, send_batch
from tasks.validate import DataCheckFailed, drop_quarantined, validate_shop_data

CampaignName = StrEnum("CampaignName", {name: name for name in campaign_names()})


class TemplateCheckFailed(RuntimeError):
    """The template failed on sample recipients: nothing is sent."""


def _run_name() -> str:
    params = flow_run.parameters
    mode = "dry-run" if params.get("dry_run") else "send"
    as_of = params.get("as_of") or today_in_shop().isoformat()
    return f"{params.get('campaign')}-{as_of}-{mode}"


def today_in_shop() -> date:
    return datetime.now(get_settings().tz).date()


def preflight(composer: MailComposer, selection: Selection) -> list:
    """Render one recipient of each (variant, language) group; any error stops the run."""
    eligible = selection.eligible
    if eligible.empty:
        return []
    keys = [c for c in ("variant", "language") if c in eligible.columns]
    firsts = eligible.groupby(keys, dropna=False, sort=False).head(1) if keys else eligible.head(1)
    return [composer.compose(row) for row in firsts.to_dict("records")]


def batches(selection: Selection, size: int, limit: int | None) -> list[list[dict]]:
    rows = selection.eligible.head(limit) if limit else selection.eligible
    records = rows.to_dict("records")
    return [records[i : i + size] for i in range(0, len(records), size)]


@flow(name="campaign", flow_run_name=_run_name, log_prints=True)
def campaign_flow(
    campaign: CampaignName,  # type: ignore[valid-type]
    as_of: Annotated[
        date | None, Field(description="Day to run for (shop time zone); empty = today.")
    ] = None,
    dry_run: Annotated[bool, Field(description="Select and render only; send nothing.")] = False,
    limit: Annotated[int | None, Field(ge=1, le=10_000_000, description="Send to at most this many.")] = None,
) -> RunReport:
    """Run one campaign of the registry for one day."""
    logger = get_run_logger()
    settings = get_settings()
    spec = get_campaign(str(getattr(campaign, "value", campaign)))
    day = as_of or today_in_shop()
    run_id = str(flow_run.id or uuid.uuid4())
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.start_run(state, run_id, spec.name, day, dry_run)
    report = RunReport(run_id=run_id, campaign=spec.name, as_of=day, dry_run=dry_run)

    frames = extract_shop_data(spec, day)
    gate = validate_shop_data(frames)
    report.checks_markdown = gate.markdown()
    report.quarantined = state_db.record_quarantine(
        state,
        run_id,
        [
            {"table_name": ds, "row_key": str(key), "check_name": ",".join(checks)[:128]}
            for ds, rows in gate.quarantine.items()
            for key, checks in rows.items()
        ],
    )
    if not gate.success:
        report.problem = f"Data checks failed, nothing sent: {gate.failure_text()}"
        record_run(report, "blocked")
        raise DataCheckFailed(report.problem)
    frames = drop_quarantined(frames, gate)

    quarantined_ids = {int(k) for k in gate.quarantined_keys("customers")}
    selection = select_recipients_task(spec, frames, day, quarantined_ids)
    report.audience = selection.audience_size
    report.eligible = len(selection.eligible)
    report.skipped = selection.skipped_by_reason()
    if "variant" in selection.eligible.columns:
        report.variants = {str(k): int(v) for k, v in selection.eligible["variant"].value_counts().items()}

    products = product_lookup(frames["products"]) if "products" in frames else {}
    composer = MailComposer(spec, settings, products)
    try:
        samples = preflight(composer, selection)
    except TemplateError as exc:
        report.problem = f"Template check failed, nothing sent: {exc}"
        record_run(report, "blocked")
        raise TemplateCheckFailed(report.problem) from exc
    report.sample = samples[0] if samples else None

    if dry_run:
        report.outcomes["would_send"] = min(report.eligible, limit or report.eligible)
        record_run(report, "completed")
        logger.info("dry run: %s", report.counts())
        return report

    work = batches(selection, settings.send_batch_size, limit)
    futures = send_batch.map(
        rows=work, campaign=unmapped(spec), products=unmapped(products), run_id=unmapped(run_id)
    )
    failed_batches = 0
    for future in futures:
        try:
            outcome = future.result()
        except Exception as exc:  # the batch stays pending/failed in the ledger: next run resends
            failed_batches += 1
            report.errors.append(f"batch failed: {type(exc).__name__}: {exc}")
            continue
        report.outcomes.update(outcome.counts)
        report.errors.extend(outcome.errors)
        report.problem = outcome.paused or report.problem
    status = "paused" if report.problem else "completed" if not failed_batches else "failed"
    record_run(report, status)
    logger.info("%s: %s", report.title(), report.counts())
    if report.problem:
        raise SendingPaused(report.problem)
    if failed_batches:
        raise RuntimeError(f"{failed_batches} of {len(work)} batches failed; rerun to resume")
    return report


def configured_campaign_flow(settings: Settings | None = None):
    """The campaign flow with the task runner the settings ask for (processes use every core
    for rendering; threads avoid process start-up for small runs)."""
    settings = settings or get_settings()
    if settings.task_runner == TaskRunnerKind.processes:
        return campaign_flow.with_options(task_runner=ProcessPoolTaskRunner(max_workers=settings.workers))
    return campaign_flow
