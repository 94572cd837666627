"""The recovery flow: runs that finish themselves (shopmail/run/recovery.py).

Every few minutes (deployment `recovery`, `SHOPMAIL_RECOVERY_CRON`): close the summaries of runs whose
process died (`crashed`, with the ledger's counts), finish the open mails of stopped runs by running
their campaign again for the same day and segment restricted to exactly those mails, and note mails a
finished run's leftover batch sent after its report (`late_sent`).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from config.settings import get_settings
from flows.campaign import configured_campaign_flow
from shopmail.campaigns import enabled_campaigns
from shopmail.redaction import install_log_redaction
from shopmail.run import recovery as rec
from shopmail.state import state_db


@flow(name="recovery", flow_run_name="recovery", log_prints=True)
def recovery(dry_run: bool = False) -> dict[str, int]:
    """Close dead runs, finish the mails stopped runs left open, note late sends.

    Args:
        dry_run: Only report what would be done.
    """
    logger = get_run_logger()
    settings = get_settings()
    install_log_redaction(settings)
    state = state_db.upgrade(settings.state_url_resolved)
    lease_s = settings.claim_lease_seconds
    done = {"closed": 0, "resumed": 0, "late": 0}
    for run in rec.dead_runs(state, lease_s):
        if dry_run:
            logger.info(
                "would close run %s of %s (silent since %s UTC)", run.run_id, run.campaign, run.last_beat
            )
            continue
        counts = rec.close_dead_run(state, run)
        done["closed"] += 1
        logger.warning(
            "Run %s of %s for %s stopped at about %s UTC (its process died): closed as crashed; "
            "sent %d, still open %d",
            run.run_id,
            run.campaign,
            run.as_of,
            run.last_beat.strftime("%H:%M"),
            counts.get("sent", 0),
            sum(counts.get(s, 0) for s in ("pending", "failed", "in_doubt")),
        )
    late = rec.late_sends(state)
    for run_id, count in late.items():
        logger.warning(
            "Run %s: %d mails were sent after its report was written (history shows it)", run_id, count
        )
    done["late"] = len(late)
    polled = {name for name, spec in enabled_campaigns().items() if spec.polled}
    grace_s = settings.doubt_grace_minutes * 60 if settings.mail_provider == "sendgrid" else 0.0
    for item in rec.resumable_runs(state, grace_s, polled):
        if item.campaign not in enabled_campaigns():
            logger.warning(
                "Run %s: campaign %s is switched off, its %d open mails wait",
                item.run_id,
                item.campaign,
                item.open,
            )
            continue
        logger.warning(
            "Finishing run %s of %s for %s: %d mails open, %d can go now, and those it never reached "
            "(recovery %d of %d)",
            item.run_id,
            item.campaign,
            item.as_of,
            item.open,
            item.ready,
            item.attempts + 1,
            rec.MAX_RECOVERY_ATTEMPTS,
        )
        if dry_run:
            continue
        rec.note_recovery_attempt(state, item.run_id, "recovery")
        try:
            report = configured_campaign_flow(settings)(
                campaign=item.campaign,
                as_of=item.as_of,
                segment=item.segment,
                resume_of=item.run_id,
                preapproved=True,
            )
            rec.note_recovery_complete(state, item.run_id, getattr(report, "run_id", "recovery"))
            done["resumed"] += 1
        except Exception as exc:  # one campaign's trouble does not stop the others' recovery
            logger.warning("Finishing run %s failed: %s (tried again next time)", item.run_id, exc)
    return done
