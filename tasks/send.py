"""Send task: render a batch, claim it in the ledger, issue its coupons, send, mark outcomes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from shopmail.campaigns import Campaign
from shopmail.db import get_engine
from shopmail.mailer.base import OutgoingMail, SendResult, SendStatus
from shopmail.mailer.errors import MailerConfigurationError
from shopmail.mailer.factory import make_sender
from shopmail.mailer.throttle import ErrorBudget, run_budget
from shopmail.redaction import install_log_redaction, redact
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import claim_cap, records
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
    """The batch's coupons could not be issued: none of its mails was sent (ledger: failed)."""


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

    On failure nothing is sent: the mails are marked `failed` (the next attempt resends them with the
    same codes) and `CouponIssueFailed` fails the batch.
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
        failed = [SendResult(m.message_key, SendStatus.failed, error=error) for m in mails]
        with contextlib.suppress(Exception):  # if this fails too they stay pending: in doubt, same end
            with_db_retries(lambda: ledger.mark(state, failed, run_id))
        raise CouponIssueFailed(f"{len(mails)} mails not sent, {error}") from exc


def resolve_doubt(state: Engine, sender: Any, claim: ledger.Claim, run_id: str) -> dict[str, str | None]:
    """Proof of acceptance for the claim's doubtful mails (taken over or still waiting): a stored
    webhook event carrying the key, else the provider's own lookup (SendGrid Email Activity, in bulk;
    outbox file; memory). Proved rows are marked `sent`; returns key -> provider message id."""
    doubtful = claim.in_doubt + claim.awaiting
    if not doubtful:
        return {}
    proofs = with_db_retries(lambda: ledger.proved_by_events(state, doubtful))
    rest = [k for k in doubtful if k not in proofs]
    if rest:
        proofs.update(sender.confirm(rest))
    taken = set(claim.in_doubt)
    done = [SendResult(k, SendStatus.sent, pid) for k, pid in proofs.items() if k in taken]
    if done:
        with_db_retries(lambda: ledger.mark(state, done, run_id))
    waiting = {k: pid for k, pid in proofs.items() if k not in taken}
    if waiting:
        with_db_retries(lambda: ledger.confirm_sent(state, waiting))
    return proofs


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
) -> BatchOutcome:
    """Exactly-once send of one batch (`rows`: dicts, or a slice of the eligible frame): ledger
    `pending` and coupons before the call, each request's outcome (sent / rejected / failed / in
    doubt) right after it; doubtful mails of earlier attempts are resolved by proof or, after the
    grace period, resent once."""
    if isinstance(rows, pd.DataFrame):
        rows = records(rows)
    settings = get_settings()
    install_log_redaction(settings)  # also in process-pool workers
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
    if budget.exhausted:  # an earlier batch spent the budget: leave these unclaimed for the rerun
        outcome.counts["paused"] += len(mails)
        outcome.paused = _pause_message(budget)
        return outcome
    sender = make_sender(settings, budget)
    lease_s = settings.claim_lease_seconds
    cap = claim_cap(campaign, settings)  # the cap under concurrency: re-checked under customer locks
    # exact providers (outbox, memory) know what they accepted: their doubt needs no grace period
    grace_s = 0.0 if sender.exact_confirm else settings.doubt_grace_minutes * 60
    claim = with_db_retries(
        lambda: ledger.claim(
            state, entries, run_id, sender.name, lease_seconds=lease_s, cap=cap, doubt_grace_s=grace_s
        )
    )
    allowed = set(claim.keys)
    outcome.counts[CLAIMED_BY_OTHER_RUN] += len(claim.held_by_other)
    outcome.counts[FREQUENCY_CAP] += len(claim.capped)
    not_done = len(allowed) + len(claim.held_by_other) + len(claim.capped) + len(claim.awaiting)
    outcome.counts["already_sent"] += len(mails) - not_done
    # the heartbeat renews the claimed rows' lease while this run works on them (another run takes
    # over only the rows of a run silent for `claim_lease_seconds`)
    with sender, ledger.Heartbeat(state, run_id, claim.token, lease_s) as heartbeat:
        confirmed = resolve_doubt(state, sender, claim, run_id)
        outcome.counts["sent_before_crash"] += len(confirmed)
        outcome.counts["in_doubt"] += len(set(claim.awaiting) - set(confirmed))
        to_send = [m for m in mails if m.message_key in allowed and m.message_key not in confirmed]
        if not sender.exact_confirm:
            outcome.counts["resent_after_doubt"] += len(set(claim.in_doubt) - set(confirmed))
        issue_batch_coupons(composer, to_send, state, settings, run_id)
        with contextlib.suppress(Exception):  # a missed beat is retried by the background beats
            heartbeat.beat()
        recorded: dict[str, SendResult] = {}
        lock = threading.Lock()

        def record(request_results: list[SendResult]) -> None:
            """Each request's outcome goes to the ledger as soon as it is known."""
            with_db_retries(lambda: ledger.mark(state, request_results, run_id))
            with lock:
                recorded.update((r.message_key, r) for r in request_results)

        try:
            results = sender.send_batch(to_send, on_results=record)
        except BaseException as exc:
            # outcomes not recorded: refused as a whole (configuration) -> failed; else the
            # requests may have gone out -> in doubt (never resent blindly, not even by a task retry)
            status = SendStatus.failed if isinstance(exc, MailerConfigurationError) else SendStatus.in_doubt
            error = f"{type(exc).__name__}: {redact(str(exc))[:300]}"
            rest = [
                SendResult(m.message_key, status, error=error)
                for m in to_send
                if m.message_key not in recorded
            ]
            with contextlib.suppress(Exception):
                with_db_retries(lambda: ledger.mark(state, rest, run_id))
            raise
    unrecorded = [r for r in results if r.message_key not in recorded]
    with_db_retries(lambda: ledger.mark(state, unrecorded, run_id))
    for result in results:
        outcome.counts[str(result.status)] += 1
        if result.error and len(outcome.errors) < 20:
            outcome.errors.append(redact(f"{result.status}: {result.error}"))
    if budget.exhausted:
        outcome.paused = _pause_message(budget)
    get_run_logger().info("batch of %d: %s", len(rows), dict(outcome.counts))
    return outcome
