"""A/B tests of a campaign run (`[ab_test]` in the campaign file), on top of the exactly-once send.

`send_campaign` is what the campaign flow and the service poller call to send a selection: without
`[ab_test]` it is `send_selection`; with `mode = "split"` each variant's share of the mails goes out
as its own phase; with `mode = "winner"`:

1. **test**: the test group (`test_share` of the eligible, stable per customer and test) is split
   evenly over the variants and sent; the test (campaign + occasion) is recorded in `ab_tests`;
2. **wait**: the run pauses in the Prefect UI for `wait_hours`, with the live numbers in the pause
   form and in the artifact `ab-test-<campaign>` (refreshed every `refresh_minutes`); a marketer
   may resume it with a winner of their choice, else it resumes itself when the wait is over;
3. **decide**: the winner by the metric and its significance test (shopmail/results/ab_stats.py);
4. **winner**: the recipients are selected again (new unsubscribes, suppressions, caps hold) and
   everyone not yet mailed gets the winner.

Exactly once across phases is the ledger's: a mail's key is campaign + occasion + customer whatever
the variant, so the winner phase can never mail a test recipient again, and a crash in any phase is
resumed by the next run from the phase `ab_tests` says (a test phase half sent finishes with the same
variants; a wait goes on until its end). The holdout is recorded before the first phase and is in no
phase. Every phase goes through `send_selection` with the phase's rows and the variant's campaign.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, create_model
from sqlalchemy import Engine

from config.settings import Settings
from flows.steps import (
    LEDGER_OUTCOMES,
    TemplateCheckFailed,
    approve_send,
    preflight,
    record_holdout,
    send_selection,
)
from segments.ab_split import group_seed, in_test_group, split_seed, variant_index
from shopmail.campaigns import Campaign, TestVariant
from shopmail.db import get_engine
from shopmail.mail.rendering import TemplateError
from shopmail.results.ab_numbers import numbers_markdown, numbers_rows, variant_numbers
from shopmail.results.ab_stats import decide
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import Selection, product_lookup
from shopmail.run.run_report import RunReport
from shopmail.state import ab_tests, state_db
from shopmail.state.engagement import settle_sent
from shopmail.state.state_db import utcnow
from tasks.record import artifact_key, record_run
from tasks.send import with_db_retries

AUTO = "let the test decide"
PHASE_WORDS = {"test": "test group", "winner": "winner to the rest", "split": "split"}
Reselect = Callable[[], Selection]


def send_campaign(
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
    reselect: Reselect | None = None,
) -> RunReport:
    """Send the selection as the campaign file says: plainly, as a continuous split, or as an A/B test
    that picks a winner (`reselect`: a fresh selection, for the winner phase after the wait)."""
    started = utcnow() - timedelta(minutes=1)
    _tag_segment(selection, report.segment)
    test = spec.ab_test
    try:
        if spec.is_series:  # each due step as its own part (flows/series_send.py)
            from flows.series_send import send_series

            return send_series(
                spec,
                selection,
                frames,
                report,
                settings,
                state,
                dry_run=dry_run,
                limit=limit,
                preapproved=preapproved,
            )
        if test is None:
            return send_selection(
                spec,
                selection,
                frames,
                report,
                settings,
                state,
                dry_run=dry_run,
                limit=limit,
                preapproved=preapproved,
            )
        if test.mode == "split":
            return send_split(
                spec,
                selection,
                frames,
                report,
                settings,
                state,
                dry_run=dry_run,
                limit=limit,
                preapproved=preapproved,
            )
        return run_winner_test(
            spec,
            selection,
            frames,
            report,
            settings,
            state,
            dry_run=dry_run,
            limit=limit,
            preapproved=preapproved,
            reselect=reselect,
        )
    finally:
        if not dry_run:  # the ledger's time of `sent` onto each mail (reports need no join)
            with contextlib.suppress(Exception):
                settle_sent(state, spec.name, started)


def _tag_segment(selection: Selection, segment: str | None) -> None:
    """The run's segment on every row (the mails' custom_args carry it: webhook events and the local
    SendGrid server's rates per segment)."""
    if segment and segment != "all" and len(selection.eligible):
        selection.eligible = selection.eligible.assign(segment=segment)


def variant_spec(spec: Campaign, variant: TestVariant) -> Campaign:
    """The campaign as `variant` sends it: its template folder, subject, preheader, sender name."""
    update: dict[str, Any] = {"test_variant": variant}
    if variant.template:
        update["template"] = variant.template
    return spec.model_copy(update=update)


def _part_of(selection: Selection, rows: pd.DataFrame) -> Selection:
    """A phase's selection: its rows only (skipped and holdout stay with the whole run)."""
    return Selection(
        audience_size=selection.audience_size,
        eligible=rows.reset_index(drop=True),
        skipped=selection.skipped.iloc[0:0],
        holdout=selection.holdout.iloc[0:0],
    )


def _merge(report: RunReport, part: RunReport, label: str) -> None:
    """Add a part's counts to the run's; the ledger's counts are the whole run's already (every part
    reads the run's rows: `count_from_ledger`), so the latest part's replace them."""
    for key in (*LEDGER_OUTCOMES, "still_open"):
        report.outcomes.pop(key, None)
    report.outcomes.update(part.outcomes)
    report.errors.extend(part.errors)
    for reason, count in part.skipped.items():
        report.skipped[reason] = report.skipped.get(reason, 0) + count
    report.problem = report.problem or part.problem
    report.sample = report.sample or part.sample
    report.variants[label] = report.variants.get(label, 0) + part.eligible


def send_part(
    spec: Campaign,
    variant: TestVariant,
    rows: pd.DataFrame,
    phase: str,
    selection: Selection,
    frames: dict[str, pd.DataFrame],
    report: RunReport,
    settings: Settings,
    state: Engine,
    limit: int | None = None,
) -> None:
    """Send one variant's rows of one phase (through `send_selection`, exactly once) and add what it
    did to the run's report."""
    if rows.empty:
        return
    part = RunReport(
        run_id=report.run_id,
        campaign=spec.name,
        as_of=report.as_of,
        dry_run=report.dry_run,
        segment=report.segment,
    )
    part.segment_title = report.segment_title
    tagged = rows.assign(test_variant=variant.name, test_phase=phase)
    try:
        send_selection(
            variant_spec(spec, variant),
            _part_of(selection, tagged),
            frames,
            part,
            settings,
            state,
            dry_run=report.dry_run,
            limit=limit,
            preapproved=True,
        )
    finally:
        _merge(report, part, f"{variant.name} ({PHASE_WORDS[phase]})")
        if not report.dry_run:  # a phase's summary is no run's: the run's own is recorded at its end
            with contextlib.suppress(Exception):
                state_db.finish_run(state, report.run_id, "running", report.counts(), report.details())


def _begin(
    spec: Campaign,
    selection: Selection,
    frames: dict[str, pd.DataFrame],
    report: RunReport,
    settings: Settings,
    state: Engine,
    *,
    dry_run: bool,
    preapproved: bool,
) -> None:
    """The whole run's counts, a template check of every variant (nothing is sent if one breaks) and
    the approval of an unusual audience (asked once, for all phases)."""
    report.audience = selection.audience_size
    report.eligible = len(selection.eligible)
    report.holdout = len(selection.holdout)
    report.skipped = selection.skipped_by_reason()
    assert spec.ab_test is not None
    products = product_lookup(frames["products"]) if "products" in frames else {}
    sample = max(10, settings.preflight_sample // len(spec.ab_test.variants))
    for variant in spec.ab_test.variants:
        try:
            preflight(MailComposer(variant_spec(spec, variant), settings, products), selection, sample)
        except TemplateError as exc:
            report.problem = f"Template check of variant {variant.name} failed, nothing sent: {exc}"
            record_run(report, "blocked")
            raise TemplateCheckFailed(report.problem) from exc
    for warning in spec.ab_test.warnings:
        get_run_logger().warning("%s: %s", spec.name, warning)
    if not dry_run and not preapproved:
        approve_send(
            spec, report, settings, state, base=len(frames["customers"]) if "customers" in frames else 0
        )


def send_split(
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
    """A continuous split: each mail goes to the variant of its customer (stable, by the shares)."""
    test = spec.ab_test
    assert test is not None
    _begin(spec, selection, frames, report, settings, state, dry_run=dry_run, preapproved=preapproved)
    if not dry_run:
        record_holdout(spec, selection, report.run_id, state)
    eligible = selection.eligible.head(limit) if limit else selection.eligible
    shares = [v.share or 1 / len(test.variants) for v in test.variants]
    index = variant_index(split_seed(spec.name), eligible["customer_id"], shares)
    for i, variant in enumerate(test.variants):
        send_part(spec, variant, eligible[index == i], "split", selection, frames, report, settings, state)
    record_run(report, "completed")
    return report


def ab_test_key(eligible: pd.DataFrame, report: RunReport) -> str:
    """What one test is about: the occasion when the run has one (a sale, a newsletter issue, a
    holiday), else the shop day."""
    occasions = eligible["occasion_key"].unique() if len(eligible) else []
    return str(occasions[0]) if len(occasions) == 1 else f"day:{report.as_of.isoformat()}"


def run_winner_test(
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
    reselect: Reselect | None = None,
) -> RunReport:
    """Test group, wait, decision, winner to the rest (see the module docstring); resumes the phase
    the test is in."""
    test = spec.ab_test
    assert test is not None
    logger = get_run_logger()
    eligible = selection.eligible
    if eligible.empty:
        return send_selection(spec, selection, frames, report, settings, state, dry_run=dry_run, limit=limit)
    key = ab_test_key(eligible, report)
    _begin(spec, selection, frames, report, settings, state, dry_run=dry_run, preapproved=preapproved)
    members = in_test_group(spec.name, key, eligible["customer_id"], test.test_share)
    index = variant_index(
        group_seed(spec.name, key), eligible["customer_id"], [1 / len(test.variants)] * len(test.variants)
    )
    shop = get_engine(settings.shop_url_resolved)
    if dry_run:
        for i, variant in enumerate(test.variants):
            send_part(
                spec,
                variant,
                eligible[members & (index == i)],
                "test",
                selection,
                frames,
                report,
                settings,
                state,
            )
        rest = int((~members).sum())
        report.outcomes["would_send"] += min(rest, limit) if limit else rest
        report.variants["the winner (to the rest, after the test)"] = rest
        record_run(report, "completed")
        return report

    record_holdout(spec, selection, report.run_id, state)
    row = ab_tests.get_test(state, spec.name, key) or with_db_retries(
        lambda: ab_tests.start_test(state, spec.name, key, report.run_id, test.names, str(test.metric))
    )
    fresh = row["status"] in (ab_tests.DECIDED, ab_tests.DONE)  # this run's selection is after the wait
    if row["status"] == ab_tests.TESTING:
        logger.info("%s: A/B test %s, sending the test group (%d mails)", spec.name, key, int(members.sum()))
        for i, variant in enumerate(test.variants):
            send_part(
                spec,
                variant,
                eligible[members & (index == i)],
                "test",
                selection,
                frames,
                report,
                settings,
                state,
            )
        decide_after = utcnow() + timedelta(hours=test.wait_hours)
        with_db_retries(lambda: ab_tests.mark_waiting(state, row["id"], decide_after))
        row = ab_tests.get_test(state, spec.name, key) or row
    if row["status"] == ab_tests.WAITING:
        numbers = variant_numbers(state, shop, spec.name, row["started_at"], test.names)
        publish_test(spec, numbers, f"waiting until {row['decide_after']:%Y-%m-%d %H:%M} UTC")
        choice, note = wait_for_winner(spec, row, state, shop)
        numbers = variant_numbers(state, shop, spec.name, row["started_at"], test.names)
        decision = decide(numbers, test)
        if choice != AUTO:
            winner, by = choice, "marketer"
            said = decision.sentence
            sentence = f"Winner chosen by a marketer: {choice} ({note or 'no note'}). The test said: {said}"
        else:
            winner, by, sentence = decision.winner, decision.decided_by, decision.sentence
        details = {
            "sentence": sentence,
            "numbers": numbers_rows(numbers, test),
            "p_values": decision.p_values,
        }
        with_db_retries(lambda: ab_tests.mark_decided(state, row["id"], winner, by, details))
        row = ab_tests.get_test(state, spec.name, key) or row
        publish_test(spec, numbers, "decided", sentence)
        logger.info("%s: %s", spec.name, sentence)
    if row["status"] in (ab_tests.DECIDED, ab_tests.DONE):
        current = selection if fresh or reselect is None else reselect()
        _tag_segment(current, report.segment)
        winner = test.variant(str(row["winner"]))
        logger.info(
            "%s: sending the winner %s to the rest (%d mails)", spec.name, winner.name, len(current.eligible)
        )
        send_part(
            spec, winner, current.eligible, "winner", current, frames, report, settings, state, limit=limit
        )
        with_db_retries(lambda: ab_tests.mark_done(state, row["id"]))
        sentence = (row.get("decision") or {}).get("sentence", "")
        publish_test(
            spec, variant_numbers(state, shop, spec.name, row["started_at"], test.names), "done", sentence
        )
    record_run(report, "completed")
    return report


def publish_test(spec: Campaign, numbers: list, status: str, sentence: str = "") -> None:
    """The test's numbers as the artifact `ab-test-<campaign>` (a new version each time)."""
    assert spec.ab_test is not None
    text = numbers_markdown(spec.name, spec.ab_test, numbers, status)
    if sentence:
        text += f"\n\n**{sentence}**"
    with contextlib.suppress(Exception):  # the numbers must never fail a send
        create_markdown_artifact(
            markdown=text, key=artifact_key("ab-test", spec.name), description=f"A/B test of {spec.name}"
        )


def winner_choice(names: list[str]) -> type[RunInput]:
    """The form of the paused test: the winner (or let the test decide) and a note."""
    options = tuple([AUTO, *names])
    return create_model(  # type: ignore[call-overload]
        "WinnerChoice",
        __base__=RunInput,
        winner=(
            Literal[options],  # type: ignore[valid-type]
            Field(
                AUTO,
                title="Winner",
                description="Send this variant to everyone else now, or let the test decide.",
            ),
        ),
        note=(str, Field("", max_length=500, title="Note", description="Why (kept with the decision).")),
    )


def wait_for_winner(spec: Campaign, row: dict[str, Any], state: Engine, shop: Engine) -> tuple[str, str]:
    """Pause until the wait is over (the run resumes itself then) or a marketer resumes it with a
    winner; returns (winner or AUTO, note). The pause form and the artifact show live numbers."""
    test = spec.ab_test
    assert test is not None
    remaining = (row["decide_after"] - utcnow()).total_seconds()
    run_id = flow_run.id
    if remaining <= 0 or run_id is None:
        return AUTO, ""
    key = f"ab-test-{row['id']}"
    numbers = variant_numbers(state, shop, spec.name, row["started_at"], test.names)
    form = winner_choice(test.names).with_initial_data(description=_pause_text(spec, row, numbers))
    stop = threading.Event()
    context = contextvars.copy_context()
    refresher = threading.Thread(
        target=context.run,
        args=(_refresh_until_decided, spec, row, state, shop, run_id, key, stop),
        name="ab-test-refresh",
        daemon=True,
    )
    refresher.start()
    try:
        answer = pause_flow_run(
            wait_for_input=form,
            timeout=int(remaining) + 600,
            poll_interval=max(1, min(10, int(remaining // 4))),
            key=key,
        )
    except FlowPauseTimeout:
        answer = None
    finally:
        stop.set()
        refresher.join(timeout=30)
    if answer is None:
        return AUTO, ""
    return str(answer.winner), str(answer.note)


def _pause_text(spec: Campaign, row: dict[str, Any], numbers: list) -> str:
    assert spec.ab_test is not None
    status = f"waiting until {row['decide_after']:%Y-%m-%d %H:%M} UTC (numbers of {utcnow():%H:%M:%S} UTC)"
    return (
        numbers_markdown(spec.name, spec.ab_test, numbers, status)
        + "\n\nResume with a winner to send it to everyone else now; leave *let the test decide* to "
        "decide by the numbers now. Without an answer the test decides itself when the wait is over."
    )


def _refresh_until_decided(
    spec: Campaign,
    row: dict[str, Any],
    state: Engine,
    shop: Engine,
    run_id: Any,
    key: str,
    stop: threading.Event,
) -> None:
    """Every `refresh_minutes`: fresh numbers in the artifact and the pause form; when the wait is
    over: resume the run (unless a marketer did)."""
    from prefect.input.actions import create_flow_run_input, delete_flow_run_input
    from prefect.input.run_input import keyset_from_base_key

    assert spec.ab_test is not None
    every = spec.ab_test.refresh_minutes * 60
    description_key = keyset_from_base_key(f"paused-{key}")["description"]
    while not stop.is_set():
        remaining = (row["decide_after"] - utcnow()).total_seconds()
        if stop.wait(max(0.0, min(every, remaining))):
            return
        if utcnow() >= row["decide_after"]:
            for _ in range(10):  # the pause may not be set yet when a wait is very short
                try:
                    resume_flow_run(run_id, run_input={"winner": AUTO, "note": ""})
                    return
                except Exception:  # noqa: BLE001 - not paused (yet, or resumed by a marketer)
                    if stop.wait(1.0):
                        return
            return
        with contextlib.suppress(Exception):
            numbers = variant_numbers(state, shop, spec.name, row["started_at"], spec.ab_test.names)
            publish_test(spec, numbers, "waiting (live numbers)")
            delete_flow_run_input(key=description_key, flow_run_id=run_id)
            create_flow_run_input(
                key=description_key, value=_pause_text(spec, row, numbers), flow_run_id=run_id
            )
