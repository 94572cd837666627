"""The service-mail poller: every few minutes, mails the service events since each campaign's
watermark (registrations, password resets, order status changes).

One extract and one data check serve every polled campaign. Each campaign reads the window
[watermark - overlap, now): the overlap catches rows committed late, the ledger makes re-reading
harmless. A campaign's watermark moves to `now` only after its mails are all sent, so a crash or
a failed send re-reads the same events next time: nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from config.settings import get_settings
from flows.steps import check_data, send_selection
from shopmail.campaigns import Campaign, registry
from shopmail.run.run_report import RunReport
from shopmail.state import state_db
from tasks.extract import extract_datasets
from tasks.select_recipients import select_recipients_task


def polled_campaigns(names: list[str] | None = None) -> list[Campaign]:
    """The registry's polled (service) campaigns, optionally only `names`."""
    found = [c for c in registry().values() if c.polled]
    return [c for c in found if not names or c.name in names]


def watermark_name(campaign: str) -> str:
    return f"service:{campaign}"


def poll_window(
    last: datetime | None, until: datetime, overlap_min: int, first_min: int
) -> tuple[datetime, datetime]:
    """[since, until): from the watermark minus the overlap, or `first_min` back on a first run."""
    since = last - timedelta(minutes=overlap_min) if last else until - timedelta(minutes=first_min)
    return min(since, until), until


def _run_name() -> str:
    mode = "dry-run" if flow_run.parameters.get("dry_run") else "send"
    return f"service-poller-{datetime.now(get_settings().tz):%Y-%m-%d-%H%M}-{mode}"


@flow(name="service-poller", flow_run_name=_run_name, log_prints=True)
def service_poller(dry_run: bool = False, campaigns: list[str] | None = None) -> dict[str, RunReport]:
    """Send every polled service mail due since the last poll.

    Args:
        dry_run: Select and render only; send nothing and leave the watermarks where they are.
        campaigns: Only these polled campaigns (empty = all).
    """
    logger = get_run_logger()
    settings = get_settings()
    specs = polled_campaigns(campaigns)
    until = state_db.utcnow()
    day = until.replace(tzinfo=UTC).astimezone(settings.tz).date()
    parent = str(flow_run.id or uuid.uuid4())
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.start_run(state, parent, "service_poller", day, dry_run)
    gate_report = RunReport(run_id=parent, campaign="service_poller", as_of=day, dry_run=dry_run)
    datasets = sorted({d for spec in specs for d in spec.datasets})
    history = max((spec.history_days for spec in specs), default=1)
    frames = extract_datasets(datasets, day, history)
    frames, quarantined_ids = check_data(frames, state, gate_report)

    reports: dict[str, RunReport] = {}
    failures: list[str] = []
    for spec in specs:
        mark = state_db.get_watermark(state, watermark_name(spec.name))
        window = poll_window(mark, until, settings.poll_overlap_minutes, settings.poll_first_lookback_minutes)
        selection = select_recipients_task(spec, frames, day, quarantined_ids, window=window)
        if len(selection.eligible):  # re-read events (overlap) that all went out: no run to record
            run_id = str(uuid.uuid5(uuid.UUID(parent), spec.name))
            state_db.start_run(state, run_id, spec.name, day, dry_run)
            report = RunReport(
                run_id=run_id,
                campaign=spec.name,
                as_of=day,
                dry_run=dry_run,
                window=[window[0].isoformat(), window[1].isoformat()],
            )
            try:
                send_selection(spec, selection, frames, report, settings, state, dry_run=dry_run, limit=None)
            except Exception as exc:  # this campaign re-reads its window next time; others go on
                failures.append(f"{spec.name}: {exc}")
                reports[spec.name] = report
                continue
            reports[spec.name] = report
        if not dry_run:
            state_db.set_watermark(state, watermark_name(spec.name), until)

    gate_report.audience = sum(r.audience for r in reports.values())
    gate_report.eligible = sum(r.eligible for r in reports.values())
    for report in reports.values():
        gate_report.outcomes.update(report.outcomes)
    gate_report.problem = "; ".join(failures)
    state_db.finish_run(
        state, parent, "failed" if failures else "completed", gate_report.counts(), gate_report.details()
    )
    logger.info(
        "service poll up to %s: %s",
        until.isoformat(timespec="seconds"),
        {name: r.counts()["sent"] for name, r in reports.items()} or "nothing due",
    )
    if failures:
        raise RuntimeError("service mails failed (they are retried next poll): " + "; ".join(failures))
    return reports
