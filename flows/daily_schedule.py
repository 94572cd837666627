"""The daily schedule: every campaign due on a day, in priority order (demo, backfills, catch-up).

In production each campaign has its own scheduled deployment and the service poller runs every
few minutes; this flow runs one whole shop day at once, e.g. `shopmail demo --as-of 2026-03-08`
or to backfill a missed day. Polled service mails read the whole day. The ledger keeps every
mail unique, so running a day twice sends nothing new.
"""

from __future__ import annotations

from datetime import date, datetime

from prefect import flow, get_run_logger
from prefect.exceptions import CancelledRun
from prefect.runtime import flow_run

from config.settings import get_settings
from flows.campaign import configured_campaign_flow
from shopmail.campaigns import Campaign, broken_campaigns, enabled_campaigns
from shopmail.db import get_engine
from shopmail.redaction import install_log_redaction, redact
from shopmail.schedule import due_on
from shopmail.shop.contract import tables_needed
from shopmail.shop.extract import missing_datasets


def _run_name() -> str:
    params = flow_run.parameters
    mode = "dry-run" if params.get("dry_run") else "send"
    as_of = params.get("as_of") or datetime.now(get_settings().tz).date().isoformat()
    return f"daily-schedule-{as_of}-{mode}"


def campaigns_due(day: date, include_service: bool = True) -> list[Campaign]:
    """Campaigns due on `day`, highest priority first (they win the frequency cap)."""
    tz = get_settings().tz
    due = [
        c for c in enabled_campaigns().values() if due_on(c, day, tz) and (include_service or not c.polled)
    ]
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
    install_log_redaction(get_settings())
    day = as_of or datetime.now(get_settings().tz).date()
    run = configured_campaign_flow()
    results: dict[str, dict[str, int | str]] = {}
    for name, reason in broken_campaigns().items():  # a broken file disables only its campaign
        logger.error("%s is disabled: %s", name, reason)
        results[name] = {"status": "disabled", "reason": reason}
    due = campaigns_due(day, include_service)
    engine = get_engine(get_settings().shop_url_resolved)
    absent = set(missing_datasets(engine, sorted({d for spec in due for d in spec.datasets})))
    for spec in due:
        lacking = [d for d in tables_needed(spec.datasets) if d in absent]
        if lacking:  # an optional dataset the shop does not have: skip only the campaigns needing it
            reason = f"skipped: the shop has no {', '.join(lacking)} table or view (`shopmail check-shop`)"
            logger.warning("%s %s", spec.name, reason)
            results[spec.name] = {"status": "skipped", "reason": reason}
            continue
        try:
            report = run(campaign=spec.name, as_of=day, dry_run=dry_run, preapproved=preapproved)
            results[spec.name] = {"status": "completed", **report.counts()}
        except CancelledRun as exc:  # approval rejected or not answered: nothing sent, not a failure
            logger.warning("%s not sent: %s", spec.name, exc)
            results[spec.name] = {"status": "rejected", "reason": redact(str(exc))[:500]}
        except Exception as exc:  # reported; the ledger lets a rerun finish it
            logger.error("%s failed: %s", spec.name, exc)
            results[spec.name] = {"status": f"failed: {type(exc).__name__}", "reason": redact(str(exc))[:500]}
    return results
