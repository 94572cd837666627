"""The service-mail poller: every few minutes, mails the service events since each campaign's
watermark (registrations, password resets, order status changes).

One extract and one data check serve every polled campaign. Each campaign reads the window
[watermark - overlap, now): the overlap catches rows committed late, the ledger makes re-reading
harmless. The watermark never moves past an event whose mail is not sent yet (final in the ledger:
sent, rejected): after a poll it moves to `now`, or to the time of the earliest event whose mail
ended `failed` (or was left to another live run, or was never tried), so the next polls re-read and
retry it; a crashed send keeps the watermark where it was. A mail still unsent when its event is
older than the campaign's `max_age_hours` leaves the window: it is closed in the ledger as `expired`
and counted (`expired` in the poll's outcomes), never silently dropped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pandas as pd
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from sqlalchemy import Engine

from config.settings import get_settings
from flows.ab_test import send_campaign
from flows.steps import check_data
from shopmail.campaigns import Campaign, enabled_campaigns
from shopmail.db import get_engine
from shopmail.redaction import install_log_redaction, redact
from shopmail.run.pipeline import Selection
from shopmail.run.run_report import RunReport
from shopmail.shop.contract import tables_needed
from shopmail.shop.extract import missing_datasets
from shopmail.state import ledger, state_db
from tasks.extract import extract_datasets
from tasks.select_recipients import select_recipients_task
from tasks.send import with_db_retries


def polled_campaigns(names: list[str] | None = None) -> list[Campaign]:
    """The registry's polled (service) campaigns the shop has switched on, optionally only `names`."""
    found = [c for c in enabled_campaigns().values() if c.polled]
    return [c for c in found if not names or c.name in names]


def runnable(specs: list[Campaign], engine: Engine) -> tuple[list[Campaign], dict[str, str]]:
    """The campaigns whose datasets the shop has, and why the others are skipped (name -> reason)."""
    absent = set(missing_datasets(engine, sorted({d for spec in specs for d in spec.datasets})))
    lacking = {spec.name: sorted(absent & set(tables_needed(spec.datasets))) for spec in specs}
    skipped = {
        name: f"skipped: the shop has no {', '.join(tables)} table or view (`shopmail check-shop`)"
        for name, tables in lacking.items()
        if tables
    }
    return [spec for spec in specs if spec.name not in skipped], skipped


def watermark_name(campaign: str) -> str:
    return f"service:{campaign}"


def poll_window(
    last: datetime | None, until: datetime, overlap_min: int, first_min: int
) -> tuple[datetime, datetime]:
    """[since, until): from the watermark minus the overlap, or `first_min` back on a first run."""
    since = last - timedelta(minutes=overlap_min) if last else until - timedelta(minutes=first_min)
    return min(since, until), until


EVENT_TIME_COLUMNS = ("event_at", "registered_at", "requested_at")  # the polled builders' event time


def settled_watermark(
    selection: Selection, state: Engine, until: datetime, current: datetime | None
) -> datetime | None:
    """Where the watermark may move after a poll: `until` when every selected mail is final in the
    ledger, else the earliest unsent event's time (never later than `until`); `current` when the
    audience has no event-time column."""
    eligible = selection.eligible
    if eligible.empty:
        return until
    done = ledger.already_done(state, eligible["message_key"].tolist())
    unsent = eligible[~eligible["message_key"].isin(done)]
    if unsent.empty:
        return until
    column = next((c for c in EVENT_TIME_COLUMNS if c in unsent.columns), None)
    if column is None:
        return current
    earliest = pd.to_datetime(unsent[column]).min()
    return until if pd.isna(earliest) else min(until, earliest.to_pydatetime())


def expire_aged_out(
    spec: Campaign,
    frames: dict[str, pd.DataFrame],
    day: date,
    quarantined_ids: set[int],
    mark: datetime | None,
    until: datetime,
    overlap_min: int,
    state: Engine,
    run_id: str,
) -> int:
    """Close as `expired` the unsent mails of events that fall out of this poll's window because they
    are older than `max_age_hours` (between the watermark minus the overlap and the cut-off)."""
    max_age = spec.params.get("max_age_hours")
    if mark is None or not max_age or spec.is_series:  # a series skips its late steps itself
        return 0
    since, cutoff = mark - timedelta(minutes=overlap_min), until - timedelta(hours=float(max_age))
    if since >= cutoff:
        return 0
    aged = select_recipients_task(spec, frames, day, quarantined_ids, window=(since, cutoff))
    entries = [
        ledger.LedgerEntry(spec.name, str(occ), int(cid))
        for occ, cid in zip(aged.eligible["occasion_key"], aged.eligible["customer_id"], strict=True)
    ]
    return with_db_retries(lambda: ledger.expire(state, entries, run_id))


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
    install_log_redaction(settings)
    specs = polled_campaigns(campaigns)
    until = state_db.utcnow()
    day = until.replace(tzinfo=UTC).astimezone(settings.tz).date()
    parent = str(flow_run.id or uuid.uuid4())
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.start_run(state, parent, "service_poller", day, dry_run)
    gate_report = RunReport(run_id=parent, campaign="service_poller", as_of=day, dry_run=dry_run)
    specs, skipped = runnable(specs, get_engine(settings.shop_url_resolved))
    for name, reason in skipped.items():  # the other polled campaigns still run
        logger.warning("%s %s", name, reason)
    gate_report.errors.extend(f"{name} {reason}" for name, reason in skipped.items())
    datasets = sorted({d for spec in specs for d in spec.datasets})
    history = max((spec.history_days for spec in specs), default=1)
    frames = extract_datasets(datasets, day, history)
    frames, quarantined_ids = check_data(frames, state, gate_report)

    reports: dict[str, RunReport] = {}
    failures: list[str] = []
    expired: dict[str, int] = {}
    for spec in specs:
        mark = state_db.get_watermark(state, watermark_name(spec.name))
        window = poll_window(mark, until, settings.poll_overlap_minutes, settings.poll_first_lookback_minutes)
        if not dry_run:
            closed = expire_aged_out(
                spec, frames, day, quarantined_ids, mark, until, settings.poll_overlap_minutes, state, parent
            )
            if closed:
                expired[spec.name] = closed
                logger.warning("%s: %d mails never sent within max_age_hours: expired", spec.name, closed)
        selection = select_recipients_task(spec, frames, day, quarantined_ids, window=window)
        book = selection.series
        news = bool(book and (book.new_entries or book.exits or book.skips)) or len(selection.holdout)
        if len(selection.eligible) or news:  # re-read events that all went out: no run to record
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
                send_campaign(spec, selection, frames, report, settings, state, dry_run=dry_run, limit=None)
            except Exception as exc:  # this campaign re-reads its window next time; others go on
                failures.append(redact(f"{spec.name}: {exc}"))
                reports[spec.name] = report
                continue
            reports[spec.name] = report
        if not dry_run:
            settled = settled_watermark(selection, state, until, mark)
            if settled is not None:
                state_db.set_watermark(state, watermark_name(spec.name), settled)

    gate_report.audience = sum(r.audience for r in reports.values())
    gate_report.eligible = sum(r.eligible for r in reports.values())
    for name, count in expired.items():
        if name in reports:
            reports[name].outcomes["expired"] += count
        else:
            gate_report.outcomes["expired"] += count
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
