"""Sending a series' due steps (campaign files with `[[steps]]`): each step's mails go out as their
own part, with the step's template, through `send_selection` (exactly once by the ledger: each step
has its own occasion key). A real run first writes its series book (new entries, exits, skipped steps);
a dry run writes nothing."""

from __future__ import annotations

import contextlib

import pandas as pd
from prefect import get_run_logger
from sqlalchemy import Engine

from config.settings import Settings
from flows.steps import LEDGER_OUTCOMES, send_selection
from segments.series import STEP_COLUMN
from shopmail.campaigns import Campaign
from shopmail.results.series_funnel import series_funnel
from shopmail.run.pipeline import Selection
from shopmail.run.run_report import RunReport
from shopmail.run.series_run import record_series, step_spec
from shopmail.state import state_db
from tasks.record import record_run
from tasks.send import with_db_retries


def _rows_of(frame: pd.DataFrame, number: int) -> pd.DataFrame:
    if frame.empty or STEP_COLUMN not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame[STEP_COLUMN].astype(int) == number].reset_index(drop=True)


def send_series(
    spec: Campaign,
    selection: Selection,
    frames: dict[str, pd.DataFrame],
    report: RunReport,
    settings: Settings,
    state: Engine,
    *,
    dry_run: bool,
    limit: int | None,
    preapproved: bool = False,
) -> RunReport:
    """Write the series book (real runs), then send each step's due mails as one part."""
    book = selection.series
    if book is not None and not dry_run:
        with_db_retries(lambda: record_series(state, book, report.run_id))
    report.audience = selection.audience_size
    report.eligible = len(selection.eligible)
    report.holdout = len(selection.holdout)
    for reason, count in selection.skipped_by_reason().items():
        report.skipped[reason] = report.skipped.get(reason, 0) + count
    left = limit
    for number in range(1, len(spec.steps) + 1):
        rows, held = _rows_of(selection.eligible, number), _rows_of(selection.holdout, number)
        if left is not None:
            rows = rows.head(left)
            left -= len(rows)
        if rows.empty and held.empty:
            continue
        part = RunReport(
            run_id=report.run_id,
            campaign=spec.name,
            as_of=report.as_of,
            dry_run=dry_run,
            segment=report.segment,
        )
        part.segment_title = report.segment_title
        piece = Selection(selection.audience_size, rows, selection.skipped.iloc[0:0], None, held)
        try:
            send_selection(
                step_spec(spec, number),
                piece,
                frames,
                part,
                settings,
                state,
                dry_run=dry_run,
                limit=None,
                preapproved=preapproved,
            )
        finally:
            for key in (*LEDGER_OUTCOMES, "still_open"):
                report.outcomes.pop(key, None)
            would = report.outcomes.get("would_send", 0)
            report.outcomes.update(part.outcomes)
            if dry_run:
                report.outcomes["would_send"] = would + part.outcomes.get("would_send", 0)
            report.errors.extend(part.errors)
            report.problem = report.problem or part.problem
            report.sample = report.sample or part.sample
            report.variants[spec.step_label(number)] = len(rows)
            if not dry_run:
                with contextlib.suppress(Exception):
                    state_db.finish_run(state, report.run_id, "running", report.counts(), report.details())
    record_run(report, "completed")
    if not dry_run:
        publish_funnel(spec, settings, state)
    get_run_logger().info(
        "%s: %d entered, %d left the series, %d steps skipped, due now: %s",
        spec.name,
        len(book.new_entries) if book else 0,
        len(book.exits) if book else 0,
        len(book.skips) if book else 0,
        report.variants or "nothing",
    )
    return report


def publish_funnel(spec: Campaign, settings: Settings, state: Engine) -> None:
    """The series' funnel so far as the artifact `series-<campaign>`; a failure is logged, never fails
    the run that sent."""
    from prefect.artifacts import create_markdown_artifact

    from shopmail.db import get_engine

    try:
        found = series_funnel(state, get_engine(settings.shop_url_resolved), spec)
        create_markdown_artifact(
            key=f"series-{spec.name.replace('_', '-')}",
            markdown=found.markdown(),
            description=f"{spec.title}: entered, each step, exits and orders (mailed vs held out)",
        )
    except Exception as exc:  # noqa: BLE001 - reporting must not fail a send
        get_run_logger().warning("could not publish the series funnel: %s", exc)
