"""Send task: render a batch, claim it in the ledger, issue its coupons, send, mark outcomes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from shopmail.campaigns import Campaign
from shopmail.db import get_engine
from shopmail.mailer import throttle
from shopmail.mailer.base import OutgoingMail, SendResult, SendStatus
from shopmail.mailer.errors import MailerConfigurationError
from shopmail.mailer.factory import make_sender
from shopmail.mailer.throttle import ErrorBudget, run_budget, stop_requested
from shopmail.redaction import install_log_redaction, redact
from shopmail.run.composer import MailComposer
from shopmail.run.interrupt import stop_worker_on_sigterm
from shopmail.run.mail_facts import record_send_facts
from shopmail.run.pipeline import claim_cap, records
from shopmail.run.vocabulary import counts_sentence
from shopmail.state import ledger, state_db
from shopmail.state.coupons import issue_coupons, recorded_coupons
from shopmail.state.ledger import LedgerEntry

T = TypeVar("T")
CLAIMED_BY_OTHER_RUN = "claimed_by_other_run"  # skip reason: a live run of the same mail sends it
FREQUENCY_CAP = "frequency_cap"  # skip reason: over a cap at claim time (another campaign was first)
CLAIM_SKIP_REASONS = (CLAIMED_BY_OTHER_RUN, FREQUENCY_CAP)
# outcome counts of doubt: `in_doubt` (a request of this run got no answer, or an earlier doubt still
# waits for proof), `sent_before_crash` (doubt resolved by proof: not resent), `resent_after_doubt`
# (no proof within the grace period: sent once more)
DOUBT_COUNTS = ("in_doubt", "sent_before_crash", "resent_after_doubt")


class SendingPaused(RuntimeError):
    """Too many failed requests in this run: the rest is left for the next run."""


class CouponIssueFailed(RuntimeError):
    """The batch's coupons could not be issued: none of its mails was sent (ledger: failed, with
    `error`)."""

    def __init__(self, message: str, error: str = "") -> None:
        super().__init__(message)
        self.error = error or message

    def __reduce__(self) -> tuple:  # process and Dask workers send it back pickled
        return (type(self), (str(self), self.error))


def _pause_message(budget: ErrorBudget) -> str:
    return (
        f"sending paused after {budget.failures} failed requests (limit {budget.limit}); "
        "unsent mails are kept for the next run: fix the cause and rerun"
    )


@dataclass
class BatchOutcome:
    """Counts of one batch, summed by the flow."""

    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    paused: str | None = None  # why sending paused (error budget spent); the rest waits for a rerun
    held_until: datetime | None = None  # when the lease over mails other runs hold ends
    held_runs: dict[str, int] = field(default_factory=dict)  # run id -> mails of this batch it holds


def with_db_retries(action: Callable[[], T], attempts: int = 5, delay_s: float = 0.5) -> T:
    """Retry a state-DB write a few times (locked SQLite, dropped connection)."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception:
            if attempt == attempts:
                raise
            time.sleep(delay_s * attempt)
    raise AssertionError("unreachable")


def batch_composer(
    campaign: Campaign,
    settings: Settings,
    products: dict[int, dict[str, Any]],
    rows: list[dict[str, Any]],
    state: Engine,
) -> MailComposer:
    """The batch's composer; with a coupon policy, mails whose coupon an earlier attempt already
    issued are rendered with the recorded coupon (same code, same expiry as in the shop)."""
    issued = {}
    if campaign.coupon is not None:
        keys = [str(r["message_key"]) for r in rows]
        issued = with_db_retries(lambda: recorded_coupons(state, keys, settings.tz))
    return MailComposer(campaign, settings, products, issued)


def issue_batch_coupons(
    composer: MailComposer, mails: list[OutgoingMail], state: Engine, settings: Settings, run_id: str
) -> None:
    """Issue the coupons of exactly these (claimed, about to be sent) mails; idempotent.

    On failure nothing is sent: `CouponIssueFailed` fails the batch and the caller marks its mails
    `failed` (the next attempt resends them with the same codes).
    """
    campaign = composer.campaign
    if campaign.coupon is None or not mails:
        return
    wanted = [composer.coupons[m.message_key] for m in mails]
    shop = get_engine(settings.shop_url_resolved)
    try:
        with_db_retries(lambda: issue_coupons(shop, state, wanted, campaign, run_id))
    except Exception as exc:
        error = f"coupon not issued: {type(exc).__name__}: {redact(str(exc))[:300]}"  # redact, then cut
        raise CouponIssueFailed(f"{len(mails)} mails not sent, {error}", error) from exc


def resolve_doubt(
    state: Engine, sender: Any, claim: ledger.Claim, addresses: dict[str, str], run_id: str
) -> dict[str, str | None]:
    """Proof of acceptance for the claim's doubtful mails (taken over or still waiting): a stored
    webhook event carrying the key, else the provider's own lookup (SendGrid Email Activity, in bulk,
    mapped back by recipient address; outbox file; memory). Proved rows are marked `sent`; returns
    key -> provider message id."""
    doubtful = claim.in_doubt + claim.awaiting
    if not doubtful:
        return {}
    proofs = with_db_retries(lambda: ledger.proved_by_events(state, doubtful))
    rest = [k for k in doubtful if k not in proofs]
    if rest:
        proofs.update(sender.confirm(rest, {k: addresses[k] for k in rest if k in addresses}))
    taken = set(claim.in_doubt)
    done = [SendResult(k, SendStatus.sent, pid) for k, pid in proofs.items() if k in taken]
    if done:
        with_db_retries(lambda: ledger.mark(state, done, token=claim.token, proved=True))
    waiting = {k: pid for k, pid in proofs.items() if k not in taken}
    if waiting:
        with_db_retries(lambda: ledger.confirm_sent(state, waiting, run_id=run_id, token=claim.token))
    return proofs


def wait_for_earlier_attempt(state: Engine, keys: list[str], run_id: str, lease_s: float) -> None:
    """A re-executed send task (Dask re-ran it after its worker died, a process pool replaced its
    worker) finds rows of an earlier attempt of this run `pending` under a live lease: that attempt
    is dead or finishing. Wait (at most a lease) until its lease ends, so this attempt can take over
    what it never requested (its fence keeps it off anything it did); stop early on a stop request."""
    until = with_db_retries(lambda: ledger.held_by_run(state, keys, run_id))
    if until is None:
        return
    wait = min((until - state_db.utcnow()).total_seconds() + 1, lease_s + 5)
    if wait <= 0:
        return
    get_run_logger().warning(
        "%d mails of this batch are held by an earlier attempt of this run (its worker died or is "
        "finishing): waiting %.0f s, until %s UTC, for its lease to end",
        len(keys),
        wait,
        until.strftime("%H:%M:%S"),
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not stop_requested:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def retry_unless_misconfigured(_task: object, _run: object, state: Any) -> bool:
    """Retry a failed batch, except when the provider is misconfigured (bad key, bad host)."""
    try:
        state.result()
    except MailerConfigurationError:
        return False
    except Exception:
        return True
    return True


@task(
    name="send-batch",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_unless_misconfigured,
    cache_policy=NONE,
)
def send_batch(
    campaign: Campaign,
    rows: list[dict[str, Any]] | pd.DataFrame,
    products: dict[int, dict[str, Any]],
    run_id: str,
    segment: str | None = None,
) -> BatchOutcome:
    """Exactly-once send of one batch (`rows`: dicts, or a slice of the eligible frame), as one
    attempt: its own claim token and lease on the ledger rows, coupons before the call, each request
    fenced and recorded (`requested_at`) before it goes out and its outcome (sent / rejected / failed
    / in doubt) right after; doubtful mails of earlier attempts are resolved by proof or, after the
    grace period, resent once. (Globals it reads are reached through modules: process workers get
    this function by value, and a lock does not pickle.)"""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if isinstance(rows, pd.DataFrame):
        rows = records(rows)
    settings = get_settings()
    install_log_redaction(settings)  # also in process-pool workers
    stop_worker_on_sigterm()  # a process-pool worker stops its sends gracefully too
    state = state_db.upgrade(settings.state_url_resolved)
    composer = batch_composer(campaign, settings, products, rows, state)
    outcome = BatchOutcome()
    mails, render_errors = composer.compose_many(rows)  # shared bodies where the template allows
    outcome.counts["render_failed"] += len(render_errors)
    outcome.errors.extend(render_errors[:20])

    rendered = {m.message_key for m in mails}
    entries = [
        LedgerEntry(campaign.name, str(r["occasion_key"]), int(r["customer_id"]))
        for r in rows
        if str(r["message_key"]) in rendered
    ]
    budget = run_budget(run_id, settings.max_send_errors)
    if budget.exhausted or throttle.stop_requested:  # leave these unclaimed for the rerun
        outcome.counts["paused"] += len(mails)
        stopped = f"sending stopped ({throttle.stop_requested.reason})"
        outcome.paused = _pause_message(budget) if budget.exhausted else stopped
        return outcome
    sender = make_sender(settings, budget)
    lease_s = settings.claim_lease_seconds
    cap = claim_cap(campaign, settings)  # the cap under concurrency: re-checked under customer locks
    # exact providers (outbox, memory) know what they accepted: their doubt needs no grace period
    grace_s = 0.0 if sender.exact_confirm else settings.doubt_grace_minutes * 60
    wait_for_earlier_attempt(state, [e.key for e in entries], run_id, lease_s)
    claim = with_db_retries(
        lambda: ledger.claim(
            state, entries, run_id, sender.name, lease_seconds=lease_s, cap=cap, doubt_grace_s=grace_s
        )
    )
    allowed = set(claim.keys)
    if allowed:  # who gets what, before the send: what the webhook's events attach to (mail_results)
        mine = frame[frame["message_key"].astype(str).isin(allowed)]
        with_db_retries(lambda: record_send_facts(state, campaign.name, mine, segment, None, run_id))
    outcome.counts[CLAIMED_BY_OTHER_RUN] += len(claim.held_by_other)
    outcome.held_until, outcome.held_runs = claim.held_until, claim.held_runs
    outcome.counts[FREQUENCY_CAP] += len(claim.capped)
    not_done = len(allowed) + len(claim.held_by_other) + len(claim.capped) + len(claim.awaiting)
    # final rows an earlier attempt of this run finished are this run's mails, not "already sent"
    outcome.counts["already_sent"] += len(mails) - not_done - len(claim.done_by_this_run)
    addresses = {m.message_key: m.to_email for m in mails}
    requested: set[str] = set()
    lock = threading.Lock()

    doubted = set(claim.in_doubt)

    def release(status: SendStatus, error: str, keys: list[str]) -> None:
        """Outcomes of claimed mails without one: requested by this attempt -> `status` (in doubt,
        unless the whole batch was refused); doubt taken over and not resolved -> still in doubt;
        never requested -> failed (definitely not sent, retryable)."""

        def outcome_of(key: str) -> SendStatus:
            if key in requested:
                return status
            return SendStatus.in_doubt if key in doubted else SendStatus.failed

        with lock:
            results = [SendResult(k, outcome_of(k), error=error) for k in keys]
        with contextlib.suppress(Exception):  # if this fails too they stay pending: the lease ends it
            with_db_retries(lambda: ledger.mark(state, results, token=claim.token))

    # the heartbeat renews the claimed rows' lease while this attempt works on them (another attempt
    # takes over only the rows of one silent for `claim_lease_seconds`)
    with sender, ledger.Heartbeat(state, run_id, claim.token, lease_s):
        confirmed: dict[str, str | None] = {}
        try:
            confirmed = resolve_doubt(state, sender, claim, addresses, run_id)
            outcome.counts["sent_before_crash"] += len(confirmed)
            outcome.counts["in_doubt"] += len(set(claim.awaiting) - set(confirmed))
            to_send = [m for m in mails if m.message_key in allowed and m.message_key not in confirmed]
            if not sender.exact_confirm:
                outcome.counts["resent_after_doubt"] += len(set(claim.in_doubt) - set(confirmed))
            issue_batch_coupons(composer, to_send, state, settings, run_id)
        except BaseException as exc:  # nothing was requested: every claimed mail is failed, retryable
            error = exc.error if isinstance(exc, CouponIssueFailed) else f"{type(exc).__name__}: {exc}"
            release(SendStatus.failed, redact(error)[:300], sorted(allowed))
            raise
        recorded: dict[str, SendResult] = {}

        def fence(group: list[OutgoingMail]) -> list[OutgoingMail]:
            """Record the request before it goes out, and keep only the mails this attempt still
            owns (another attempt may have taken over after this one's lease ran out)."""
            keys = [m.message_key for m in group]
            owned = with_db_retries(lambda: ledger.mark_requested(state, keys, claim.token))
            with lock:
                requested.update(owned)
            return [m for m in group if m.message_key in owned]

        def record(request_results: list[SendResult]) -> None:
            """Each request's outcome goes to the ledger as soon as it is known."""
            with_db_retries(lambda: ledger.mark(state, request_results, token=claim.token))
            with lock:
                recorded.update((r.message_key, r) for r in request_results)

        try:
            results = sender.send_batch(to_send, on_results=record, before_request=fence)
        except BaseException as exc:
            # outcomes not recorded: refused as a whole (configuration) -> failed; else the requested
            # ones may have gone out -> in doubt (never resent blindly, not even by a task retry)
            status = SendStatus.failed if isinstance(exc, MailerConfigurationError) else SendStatus.in_doubt
            with lock:
                rest = [m.message_key for m in to_send if m.message_key not in recorded]
            release(status, f"{type(exc).__name__}: {redact(str(exc))[:300]}", rest)
            raise
    unrecorded = [r for r in results if r.message_key not in recorded]
    with_db_retries(lambda: ledger.mark(state, unrecorded, token=claim.token))
    fenced_out = len(to_send) - len(results)  # another attempt took them over: it sends them
    if fenced_out:
        outcome.counts[CLAIMED_BY_OTHER_RUN] += fenced_out
    for result in results:
        outcome.counts[str(result.status)] += 1
        if result.error and len(outcome.errors) < 20:
            outcome.errors.append(redact(f"{result.status}: {result.error}"))
    if budget.exhausted:
        outcome.paused = _pause_message(budget)
    elif throttle.stop_requested:
        outcome.paused = f"sending stopped ({throttle.stop_requested.reason})"
    get_run_logger().info("Batch of %d mails: %s.", len(rows), counts_sentence(outcome.counts))
    return outcome
