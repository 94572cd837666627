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
from shopmail.campaigns import Campaign
from shopmail.mail.rendering import TemplateError
from shopmail.run.approval import needs_approval
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import Selection, batch_products, product_lookup, sharing_order
from shopmail.run.run_report import RunReport, redact, redact_tokens
from shopmail.shop.extract import day_end_utc
from shopmail.state import ledger, state_db
from shopmail.state.coupons import coupons_waiting
from tasks.record import record_run
from tasks.send import CLAIM_SKIP_REASONS, SendingPaused, send_batch, with_db_retries
from tasks.validate import DataCheckFailed, drop_quarantined, validate_shop_data

APPROVAL_POLL_S = 3  # how often a paused run checks for the marketer's answer


class TemplateCheckFailed(RuntimeError):
    """The template failed on sample recipients: nothing is sent."""


class RenderFailed(RuntimeError):
    """Some recipients' mails could not be rendered: the run failed (the rendered ones were sent)."""


class SendNotApproved(RuntimeError):
    """The audience needed approval and was rejected (or nobody answered in time)."""


class Approval(RunInput):
    """What the marketer answers in the Prefect UI when a send is paused for approval."""

    approve: bool = Field(
        False, title="Approve", description="Tick to send to this audience; leave unticked to cancel the run."
    )
    note: str = Field("", max_length=500, title="Note", description="Why (shown in the run's report).")


SEVERITY_WORDS = {
    "critical": "the run stops",
    "quarantine": "set aside, never mailed",
    "unknown": "the value is treated as missing",
}


def findings_sentence(gate: Any) -> str:
    """What the data checks found, as one sentence for the run log, e.g. "Data checks found: in
    customers, 3 of 600 rows fail email match_regex (set aside, never mailed)." """
    parts = []
    for r in (r for r in gate.results if r.unexpected):
        check = r.check.removeprefix("expect_column_values_to_").replace("_", " ")
        what = SEVERITY_WORDS.get(r.severity, r.severity)
        parts.append(f"in {r.dataset}, {r.unexpected:,} of {r.rows:,} rows fail {r.column} {check} ({what})")
    return "Data checks found: " + "; ".join(parts) + ". The run report's data-check table lists every check."


def check_data(
    frames: dict[str, pd.DataFrame], state: Engine, report: RunReport
) -> tuple[dict[str, pd.DataFrame], set[int]]:
    """Great Expectations gate: record quarantined rows; stop the run if a check failed."""
    gate = validate_shop_data(frames, report.as_of, day_end_utc(report.as_of, get_settings().tz))
    report.checks_markdown = gate.markdown()
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


PREFLIGHT_SAMPLE = 200  # recipients rendered before any send, beyond one per variant and language


def preflight(composer: MailComposer, selection: Selection, sample: int = PREFLIGHT_SAMPLE) -> list:
    """Render one recipient of each (variant, language) group, then an evenly spread sample of up to
    `sample` more (branches that only some recipients' data reach); any error stops the run before
    a mail goes out. Returns the first mails (one per group)."""
    eligible = selection.eligible
    if eligible.empty:
        return []
    keys = [c for c in ("variant", "language") if c in eligible.columns]
    firsts = eligible.groupby(keys, dropna=False, sort=False).head(1) if keys else eligible.head(1)
    mails = [composer.compose(row) for row in firsts.to_dict("records")]
    step = max(1, len(eligible) // sample)
    for row in eligible.iloc[::step].head(sample).to_dict("records"):
        composer.compose(row)
    return mails


def batches(selection: Selection, size: int, limit: int | None) -> list[pd.DataFrame]:
    """The send batches: the first `limit` eligible rows, recipients sharing a body side by side, as
    slices of one frame (each task makes its own rows into dicts: the flow never holds them all, and
    process workers receive columns, not a million pickled dicts)."""
    rows = selection.eligible.head(limit) if limit else selection.eligible
    ordered = sharing_order(rows).reset_index(drop=True)
    return [ordered.iloc[i : i + size] for i in range(0, len(ordered), size)]


def approval_request(report: RunReport, reason: str) -> str:
    """Markdown shown on the paused run: why, the counts, and the sample mail (tokens redacted)."""
    lines = [f"## Approve {report.title()}?", "", f"**Why this needs approval:** {reason}.", ""]
    lines += ["| measure | count |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in report.counts().items() if k != "sent"]
    lines += [f"| skipped: {k} | {v:,} |" for k, v in sorted(report.skipped.items())]
    lines += [f"| variant: {k} | {v:,} |" for k, v in sorted(report.variants.items())]
    if report.sample is not None:
        lines += ["", f"**Sample subject:** {report.sample.subject}", "", "```text"]
        lines += [redact_tokens(report.sample.text)[:3000], "```"]
    return redact("\n".join(lines))


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
            wait_for_input=Approval.with_initial_data(description=approval_request(report, decision.reason)),
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
        record_run(report, "completed")
        return report
    if not preapproved:
        approve_send(
            spec, report, settings, state, base=len(frames["customers"]) if "customers" in frames else 0
        )

    record_holdout(spec, selection, report.run_id, state)
    work = batches(selection, settings.send_batch_size, limit)
    futures = send_batch.map(
        rows=work,
        campaign=unmapped(spec),
        products=[batch_products(rows, products) for rows in work],
        run_id=unmapped(report.run_id),
    )
    failed_batches = 0
    for future in futures:
        try:
            outcome = future.result()
        except Exception as exc:  # the batch stays pending/failed in the ledger: next run resends
            failed_batches += 1
            report.errors.append(redact(f"batch failed: {type(exc).__name__}: {exc}"))
            continue
        counts = Counter(outcome.counts)
        for reason in CLAIM_SKIP_REASONS:  # lost at claim time: skipped (reported by reason), not failed
            if count := counts.pop(reason, 0):
                report.skipped[reason] = report.skipped.get(reason, 0) + count
        report.outcomes.update(counts)
        report.errors.extend(outcome.errors)
        report.problem = outcome.paused or report.problem
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
    status = "failed" if unrendered else status
    record_run(report, status)
    if unrendered:
        raise RenderFailed(report.problem)
    if report.problem:
        raise SendingPaused(report.problem)
    if failed_batches:
        raise RuntimeError(f"{failed_batches} of {len(work)} batches failed; rerun to resume")
    return report


def plain_params(value: Any) -> Any:
    """A flow parameter as a plain value (enums from the UI arrive as enum members)."""
    return getattr(value, "value", value)
