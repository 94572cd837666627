"""The daily schedule: every campaign due on a day, in priority order (demo, backfills, catch-up).

In production each campaign has its own scheduled deployment and the service poller runs every
few minutes; this flow runs one whole shop day at once, e.g. `shopmail demo --as-of 2026-03-08`
or to backfill a missed day. Polled service mails read the whole day. The ledger keeps every
mail unique, so running a day twice sends nothing new.
"""

from __future__ import annotations

from datetime import date, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from config.settings import get_settings
from flows.campaign import configured_campaign_flow
from shopmail.campaigns import Campaign, registry
from shopmail.schedule import due_on


def _run_name() -> str:
    params = flow_run.parameters
    mode = "dry-run" if params.get("dry_run") else "send"
    as_of = params.get("as_of") or datetime.now(get_settings().tz).date().isoformat()
    return f"daily-schedule-{as_of}-{mode}"


def campaigns_due(day: date, include_service: bool = True) -> list[Campaign]:
    """Campaigns due on `day`, highest priority first (they win the frequency cap)."""
    tz = get_settings().tz
    due = [c for c in registry().values() if due_on(c, day, tz) and (include_service or not c.polled)]
    return sorted(due, key=lambda c: (-c.priority, c.name))


@flow(name="daily-schedule", flow_run_name=_run_name, log_prints=True)
def daily_schedule(
    as_of: date | None = None,
    dry_run: bool = False,
    include_service: bool = True,
    preapproved: bool = False,
) -> dict[str, dict[str, int | str]]:
    """Run each campaign due on the day; one campaign's failure does not stop the others.

    Args:
        as_of: The shop day to run (backfill a missed day); empty = today.
        dry_run: Select and render only; send nothing.
        include_service: Also the polled service mails, over the whole day.
        preapproved: Skip the approval pauses for unusually large audiences.
    """
    logger = get_run_logger()
    day = as_of or datetime.now(get_settings().tz).date()
    run = configured_campaign_flow()
    results: dict[str, dict[str, int | str]] = {}
    for spec in campaigns_due(day, include_service):
        try:
            report = run(campaign=spec.name, as_of=day, dry_run=dry_run, preapproved=preapproved)
            results[spec.name] = {"status": "completed", **report.counts()}
        except Exception as exc:  # reported; the ledger lets a rerun finish it
            logger.error("%s failed: %s", spec.name, exc)
            results[spec.name] = {"status": f"failed: {type(exc).__name__}"}
    return results
