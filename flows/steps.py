"""Steps shared by the flows (campaign, service poller); each runs inside a flow run."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pandas as pd
from prefect import get_run_logger, unmapped
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from flows.forms import campaign_titles
from shopmail.campaigns import Campaign
from shopmail.mail.rendering import TemplateError
from shopmail.mailer.throttle import stop_requested
from shopmail.run.approval import needs_approval
from shopmail.run.campaign_check import preflight
from shopmail.run.composer import MailComposer
from shopmail.run.interrupt import StopRequested, stop_if_requested
from shopmail.run.pipeline import Selection, batch_products, product_lookup, sharing_order
from shopmail.run.run_report import RunReport, redact
from shopmail.run.sample_mail import sample_markdown
from shopmail.run.vocabulary import check_words, checks_table, words
from shopmail.run.zero_reason import zero_reason
from shopmail.shop.extract import day_end_utc
from shopmail.state import ledger, state_db
from shopmail.state.coupons import coupons_waiting
from tasks.record import artifact_key, html_link_markdown, record_run, save_mail_html
from tasks.send import CLAIM_SKIP_REASONS, SendingPaused, send_batch, with_db_retries
from tasks.validate import DataCheckFailed, drop_quarantined, validate_shop_data

APPROVAL_POLL_S = 3  # how often a paused run checks for the marketer's answer


class TemplateCheckFailed(RuntimeError):
    """The template failed on sample recipients: nothing is sent."""


class RenderFailed(RuntimeError):
    """Some recipients' mails could not be rendered: the run failed (the rendered ones were sent)."""


class BatchesFailed(RuntimeError):
    """Send batches failed as a whole (a worker process died, the state DB went away): their mails
    stay open in the ledger; the recovery step or a rerun sends them, exactly once."""


class SendNotApproved(RuntimeError):
    """The audience needed approval and was rejected (or nobody answered in time)."""


class Approval(RunInput):
    """What the marketer answers in the Prefect UI when a send is paused for approval."""

    approve: bool = Field(
        False, title="Approve", description="Tick to send to this audience; leave unticked to cancel the run."
    )
    note: str = Field("", max_length=500, title="Note", description="Why (shown in the run's report).")


def findings_sentence(gate: Any) -> str:
    """What the data checks found, as one sentence for the run log, e.g. "Data checks found: in
    customers, 3 of 600 rows: email must be a valid e-mail address (row set aside, never mailed)." """
    parts = [
        f"in {r.dataset}, {r.unexpected:,} of {r.rows:,} rows: {r.column} {check_words(r.check)} "
        f"({words(r.severity, 'severity')})"
        for r in gate.results
        if r.unexpected
    ]
    return "Data checks found: " + "; ".join(parts) + ". The run report's data-check table lists every check."


def check_data(
    frames: dict[str, pd.DataFrame], state: Engine, report: RunReport
) -> tuple[dict[str, pd.DataFrame], set[int]]:
    """Great Expectations gate: record quarantined rows; stop the run if a check failed."""
    gate = validate_shop_data(frames, report.as_of, day_end_utc(report.as_of, get_settings().tz))
    report.checks_markdown = checks_table(gate.results)
    if gate.findings():
        get_run_logger().warning("%s", findings_sentence(gate))
    report.quarantined = state_db.record_quarantine(
        state,
        report.run_id,
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
    return drop_quarantined(frames, gate), {int(k) for k in gate.quarantined_keys("customers")}


def batches(selection: Selection, size: int, limit: int | None) -> list[pd.DataFrame]:
    """The send batches: the first `limit` eligible rows, recipients sharing a body side by side, as
    slices of one frame (each task makes its own rows into dicts: the flow never holds them all, and
    process workers receive columns, not a million pickled dicts)."""
    rows = selection.eligible.head(limit) if limit else selection.eligible
    ordered = sharing_order(rows).reset_index(drop=True)
    return [ordered.iloc[i : i + size] for i in range(0, len(ordered), size)]


def approval_request(report: RunReport, reason: str, pointer: str = "") -> str:
    """Markdown shown on the paused run, in the marketer's words (shopmail/run/vocabulary.py): why, the
    counts, and the sample mail (subject, preheader, first lines, where the full mail is; tokens
    redacted)."""
    title = campaign_titles().get(report.campaign, report.campaign)  # the marketer's name, not the id
    lines = [f"## {words('approve', 'label')}: {title}, {report.as_of.isoformat()}?", ""]
    lines += [f"**{words('why_approval', 'label')}:** {reason}.", ""]
    lines += [f"| {words('measure', 'label')} | {words('count', 'label')} |", "|---|---:|"]
    lines += [f"| {words(k, 'count')} | {v:,} |" for k, v in report.counts().items() if k != "sent"]
    skipped = words("skipped_because", "label")
    lines += [f"| {skipped}: {words(k)} | {v:,} |" for k, v in sorted(report.skipped.items())]
    variant = words("variant", "label")
    lines += [f"| {variant}: {words(k, 'variant')} | {v:,} |" for k, v in sorted(report.variants.items())]
    if report.sample is not None:
        lines += ["", *sample_markdown(report.sample, pointer)]
    return redact("\n".join(lines))


def sample_pointer(report: RunReport) -> str:
    """Where the paused run's full sample mail can be read: its saved HTML preview (a signed link), or
    the preview command when the preview cannot be saved."""
    fallback = words("full_mail_later", "label").format(
        key=artifact_key("mail", report.campaign), campaign=report.campaign
    )
    if report.sample is None:
        return ""
    try:
        html = save_mail_html(report.sample, f"{report.campaign}-{report.run_id}-approval")
        return html_link_markdown(html)
    except Exception:  # noqa: BLE001 - a preview that cannot be saved must not block the decision
        return fallback


def approve_send(spec: Campaign, report: RunReport, settings: Settings, state: Engine, base: int = 0) -> None:
    """Pause for a marketer's decision when the audience size is anomalous or implausible for a base
    of `base` customers; raise if not approved."""
    decision = needs_approval(
        spec.kind,
        report.eligible,
        state_db.recent_audiences(state, spec.name),
        settings.approval_factor,
        settings.approval_min_audience,
        settings.approval_max_audience,
        base=base,
        max_share=spec.max_share,
    )
    if not decision.needed:
        return
    logger = get_run_logger()
    logger.warning("%s: %s; waiting for approval in the Prefect UI", report.title(), decision.reason)
    try:
        answer = pause_flow_run(
            # only the description: initial data would replace the fields and drop their hints
            wait_for_input=Approval.with_initial_data(
                description=approval_request(report, decision.reason, sample_pointer(report))
            ),
            timeout=settings.approval_timeout_s,
            poll_interval=APPROVAL_POLL_S,
            key="audience-approval",
        )
    except FlowPauseTimeout:
        answer = None
    if answer is None or not answer.approve:
        why = "not approved in time" if answer is None else f"rejected: {answer.note or 'no note'}"
        report.approval = f"{decision.reason}; {why}"
        report.problem = f"Send not approved, nothing sent ({report.approval})"
        record_run(report, "rejected")
        raise SendNotApproved(report.problem)
    report.approval = f"{decision.reason}; approved: {answer.note or 'no note'}"
    logger.info("approved: %s", answer.note or "no note")


def record_holdout(spec: Campaign, selection: Selection, run_id: str, state: Engine) -> int:
    """Real runs only: write the holdout group to the ledger (`holdout`, final) before anything is sent,
    so those customers never get this occasion's mail and the report can compare them; idempotent."""
    if selection.holdout.empty:
        return 0
    entries = [
        ledger.LedgerEntry(spec.name, str(occ), int(cid))
        for occ, cid in zip(
            selection.holdout["occasion_key"].tolist(), selection.holdout["customer_id"].tolist(), strict=True
        )
    ]
    return with_db_retries(lambda: ledger.record_holdout(state, entries, run_id))


def send_selection(
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
    """Preflight render, approval guard, batched exactly-once send, record."""
    report.audience = selection.audience_size
    report.eligible = len(selection.eligible)
    report.holdout = len(selection.holdout)
    report.skipped = selection.skipped_by_reason()
    if "variant" in selection.eligible.columns:
        report.variants = {str(k): int(v) for k, v in selection.eligible["variant"].value_counts().items()}

    products = product_lookup(frames["products"]) if "products" in frames else {}
    try:
        samples = preflight(MailComposer(spec, settings, products), selection, settings.preflight_sample)
    except TemplateError as exc:
        report.problem = f"Template check failed, nothing sent: {exc}"
        record_run(report, "blocked")
        raise TemplateCheckFailed(report.problem) from exc
    report.sample = samples[0] if samples else None

    if dry_run:
        report.outcomes["would_send"] = min(report.eligible, limit or report.eligible)
        explain_zero(report, selection.empty, limit)
        record_run(report, "completed")
        return report
    if not preapproved:
        approve_send(
            spec, report, settings, state, base=len(frames["customers"]) if "customers" in frames else 0
        )

    stop_if_requested("sending")
    record_holdout(spec, selection, report.run_id, state)
    work = batches(selection, settings.send_batch_size, limit)
    futures = send_batch.map(  # each batch records its mails' facts (mail_results) before it sends
        rows=work,
        campaign=unmapped(spec),
        products=[batch_products(rows, products) for rows in work],
        run_id=unmapped(report.run_id),
        segment=unmapped(report.segment),
    )
    failed_batches, first_failure = 0, None
    for future in futures:
        try:
            outcome = future.result()
        except Exception as exc:  # the batch stays pending/failed in the ledger: next run resends
            failed_batches, first_failure = failed_batches + 1, first_failure or exc
            report.errors.append(redact(f"batch failed: {type(exc).__name__}: {exc}"))
            continue
        counts = Counter(outcome.counts)
        for reason in CLAIM_SKIP_REASONS:  # lost at claim time: skipped (reported by reason), not failed
            if count := counts.pop(reason, 0):
                report.skipped[reason] = report.skipped.get(reason, 0) + count
        report.outcomes.update(counts)
        report.errors.extend(outcome.errors)
        report.problem = outcome.paused or report.problem
        note_held(report, outcome)
    count_from_ledger(report, state)
    if stop_requested:  # a stop signal: in-flight requests ended, the rest waits
        left = report.eligible - report.outcomes.get("sent", 0) - report.outcomes.get("rejected", 0)
        report.interrupted_by = stop_requested.reason
        report.problem = (
            f"stopped by {stop_requested.reason}: no new requests went out, those in flight ended and "
            f"were recorded; {report.outcomes.get('sent', 0):,} sent, about {max(left, 0):,} not sent yet "
            "(a rerun sends them"
            + (", or the recovery step" if stop_requested.reason == "SIGTERM" else "")
            + ")"
        )
        record_run(report, "interrupted")
        raise StopRequested(report.problem, stop_requested.reason)
    if spec.coupon is not None:  # coupons issued for mails not sent (yet): the rerun sends them
        with contextlib.suppress(Exception):
            report.outcomes["coupons_waiting"] = coupons_waiting(state, spec.name).get(spec.name, 0)
    unrendered = report.outcomes.get("render_failed", 0)
    if unrendered and not report.problem:
        report.problem = (
            f"{unrendered:,} of {report.eligible:,} mails could not be rendered with template "
            f"'{spec.template}' and were not sent (the others were); fix the template and rerun: "
            "the ledger resends only those. First errors: " + "; ".join(report.errors[:3])
        )
    status = (
        "paused" if report.problem and not unrendered else "completed" if not failed_batches else "failed"
    )
    if failed_batches:
        report.batches_failed = failed_batches  # the recovery step finishes such a run
    status = "failed" if unrendered else status
    explain_zero(report, selection.empty, limit)
    record_run(report, status)
    if unrendered:
        raise RenderFailed(report.problem)
    if report.problem:
        raise SendingPaused(report.problem)
    if failed_batches:
        first = report.errors[0] if report.errors else "?"
        raise BatchesFailed(
            f"{failed_batches} of {len(work)} send batches failed ({first})"
        ) from first_failure
    return report


def explain_zero(report: RunReport, empty: tuple[str, dict[str, str]] | None, limit: int | None) -> None:
    """A run that sends nothing (and had no problem that says why already): why, in one sentence, in
    its report, its summary and its last log line."""
    done = report.would_send() if report.dry_run else report.counts()["sent"] + report.counts()["failed"]
    if done or report.problem or report.counts()["rejected"] or report.extra_counts():
        return
    report.zero_reason = zero_reason(
        audience=report.audience,
        skipped=report.skipped,
        holdout=report.holdout,
        empty=empty,
        limit=limit,
        dry_run=report.dry_run,
    )


def note_held(report: RunReport, outcome: Any) -> None:
    """Which runs held this run's mails, and until when (for the CLI's words and `--wait`)."""
    for run, count in (outcome.held_runs or {}).items():
        report.held_runs[run] = report.held_runs.get(run, 0) + count
    if outcome.held_until is not None:
        until = outcome.held_until.isoformat(timespec="seconds")
        report.held_until = max(report.held_until, until) if report.held_until else until


LEDGER_OUTCOMES = ("sent", "rejected", "failed", "in_doubt", "sent_before_crash", "resent_after_doubt")


def count_from_ledger(report: RunReport, state: Engine) -> None:
    """The run's sending outcomes as the ledger holds them (rows this run's attempts claimed, in their
    final states), not as its tasks reported them: a batch whose result died with its worker and ran
    again, or a retried task, is counted once. Doubt this run met in earlier runs' rows stays as the
    tasks saw it (`awaiting_proof`); rows still `pending` are reported as `still_open`."""
    counts = with_db_retries(lambda: ledger.run_counts(state, report.run_id))
    report.outcomes["awaiting_proof"] = report.outcomes.pop("in_doubt", 0)
    for key in LEDGER_OUTCOMES:
        report.outcomes[key] = counts.get(key, 0)
    report.outcomes["still_open"] = counts.get("pending", 0)
    for key in ("awaiting_proof", "still_open", *LEDGER_OUTCOMES):
        if not report.outcomes[key]:
            del report.outcomes[key]


def plain_params(value: Any) -> Any:
    """A flow parameter as a plain value (enums from the UI arrive as enum members)."""
    return getattr(value, "value", value)
