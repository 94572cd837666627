"""A series tried on one test customer (no Prefect): every step's mail as that customer would get it
for their latest occasion of the series (a cart, a registration, a delivered order), each at the
moment it would fall due. Nothing is recorded: no series entry, no ledger row, so the customer's
real series is untouched."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from config.settings import get_settings
from segments.audiences.registry import build_audience
from segments.series import ENTRY_KEY_COLUMN, STEP_COLUMN, condition_holds
from shopmail.campaigns import Campaign, get_campaign
from shopmail.db import get_engine
from shopmail.mailer.base import OutgoingMail
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import attach_customers, product_lookup
from shopmail.run.series_run import HOLDOUT_COLUMN, entry_keys, series_clock, span_hours, step_spec
from shopmail.shop.data_checks import ShopRules, clean_frames, run_gate
from shopmail.shop.extract import day_end_utc, extract


@dataclass
class TrialStep:
    number: int
    label: str  # "step 2 (2 days later)"
    due_at: datetime  # naive UTC: when the real series would send it
    mail: OutgoingMail | None  # None: the step's condition does not hold for this entry
    reason: str = ""


@dataclass
class SeriesTrial:
    campaign: str
    customer_id: int
    entry_key: str = ""
    entered_at: datetime | None = None  # naive UTC
    steps: list[TrialStep] = field(default_factory=list)
    reason: str = ""  # why there is no trial (not a series, no occasion, data checks failed)


def _due_moments(spec: Campaign, entered: datetime) -> list[datetime]:
    """Each step's moment when every step goes out on time (`after = "previous"` counts from the
    previous step's moment)."""
    moments, previous = [], entered
    for step in spec.steps:
        base = entered if step.after == "entry" else previous
        previous = base + timedelta(hours=step.delay_hours)
        moments.append(previous)
    return moments


def trial_mails(spec: Campaign, entry: dict, customers: pd.DataFrame, products: dict) -> list[TrialStep]:
    """The steps of one entry (an audience row of the series' rule) as mails (pure but for the
    settings): the entry's values with each step's `values`, the step's template."""
    settings = get_settings()
    entered = pd.Timestamp(entry[spec.entered_at]).to_pydatetime().replace(tzinfo=None)
    steps = []
    for number, (step, due) in enumerate(zip(spec.steps, _due_moments(spec, entered), strict=True), 1):
        failed = [c for c in step.conditions if not condition_holds(c, entry)]
        if failed:
            steps.append(
                TrialStep(number, spec.step_label(number), due, None, f"condition not met: {failed[0]}")
            )
            continue
        row = {**entry, **step.values, STEP_COLUMN: number, HOLDOUT_COLUMN: False}
        recipient = attach_customers(spec, pd.DataFrame([row]), customers).to_dict("records")[0]
        as_step = step_spec(spec, number)
        mail = MailComposer(as_step, settings, products, {}).compose(recipient)
        steps.append(TrialStep(number, spec.step_label(number), due, mail))
    return steps


def series_trial(campaign_name: str, customer_id: int, as_of: date | None = None) -> SeriesTrial:
    """Every step's mail of the customer's latest occasion of the series within its span up to
    `as_of` (shop day; empty: now), or why there is none. Nothing is sent or recorded."""
    settings = get_settings()
    spec = get_campaign(campaign_name)
    trial = SeriesTrial(spec.name, customer_id)
    if not spec.is_series:
        trial.reason = f"'{spec.name}' is a single mail, not a series: use the mail preview"
        return trial
    day = as_of or datetime.now(settings.tz).date()
    frames = extract(
        get_engine(settings.shop_url_resolved), spec.datasets, day, settings.tz, spec.history_days
    )
    gate = run_gate(frames, day, day_end_utc(day, settings.tz), rules=ShopRules.from_settings(settings))
    if not gate.success:
        trial.reason = f"data checks failed: {gate.failure_text()}"
        return trial
    frames = clean_frames(frames, gate)
    now = series_clock(day, settings.tz, None)
    since = now - timedelta(hours=span_hours(spec))
    audience = build_audience(spec.audience, frames, day, settings.tz, spec.params, (since, now))
    mine = audience[audience["customer_id"].astype(int) == customer_id] if len(audience) else audience
    if mine.empty:
        start = since.replace(tzinfo=UTC).astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
        trial.reason = (
            f"customer {customer_id} has no occasion of this series (its rule: {spec.audience}) between "
            f"{start} and the end of {day.isoformat()} shop time: give them one in the shop (a cart, a "
            "registration, a delivered order) or pick the day it happened"
        )
        return trial
    mine = mine.assign(**{ENTRY_KEY_COLUMN: entry_keys(spec, mine)})
    entry = mine.sort_values(spec.entered_at).to_dict("records")[-1]
    trial.entry_key = str(entry[ENTRY_KEY_COLUMN])
    trial.entered_at = pd.Timestamp(entry[spec.entered_at]).to_pydatetime().replace(tzinfo=None)
    products = product_lookup(frames["products"]) if "products" in frames else {}
    trial.steps = trial_mails(spec, entry, frames["customers"], products)
    return trial


def as_test_mail(mail: OutgoingMail, to_email: str, step: TrialStep, steps: int, run_id: str) -> OutgoingMail:
    """The step's mail addressed to a test inbox: the subject says which step it is, the key and the
    webhook's custom_args are the trial run's (never the customer's: a click on it cannot end or count
    toward the real series), no send hour."""
    return replace(
        mail,
        message_key=f"trial:{run_id}:step{step.number}",
        to_email=to_email,
        to_name="",
        subject=f"[Test {step.number}/{steps}] {mail.subject}",
        custom_args={"campaign": f"trial:{mail.custom_args.get('campaign', '')}", "trial_run": run_id},
        send_at=None,
    )
