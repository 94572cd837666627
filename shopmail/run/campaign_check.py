"""What a campaign run does before it sends, as plain functions: read the shop data (`campaign_frames`),
check it (`gate_frames`), select the recipients and render a preflight sample (`preflight`). The flow
(flows/campaign.py, through its tasks) and `dry_run` call the same functions, so `shopmail check-shop`,
which dry-runs every enabled campaign with `dry_run`, is green exactly when those dry runs complete.

`dry_run` sends, issues and records nothing (the state DB is only read: ledger, suppressions, caps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from config.settings import Settings
from shopmail.campaigns import Campaign
from shopmail.run.composer import MailComposer
from shopmail.run.errors import explain, unexpected
from shopmail.run.pipeline import Selection, product_lookup, select_recipients
from shopmail.shop.contract import DATASETS, ContractError, DatasetMissing, DatasetUnreadable
from shopmail.shop.data_checks import GateReport, ShopRules, clean_frames, run_gate
from shopmail.shop.extract import day_end_utc, extract, missing_datasets


def campaign_frames(
    engine: Engine, campaign: Campaign, as_of: date, settings: Settings
) -> dict[str, pd.DataFrame]:
    """Every dataset the campaign declares, as it stood at the end of `as_of` (the extract task)."""
    return extract(
        engine,
        campaign.datasets,
        as_of,
        settings.tz,
        campaign.history_days,
        product_url=settings.product_url_template,
    )


def gate_frames(
    frames: dict[str, pd.DataFrame],
    as_of: date | None,
    settings: Settings,
    now: datetime,
    until: datetime | None = None,
) -> GateReport:
    """The data checks of a run for `as_of` (the validate task): `until` defaults to the end of that
    shop day; the orders' freshness is judged against `now` (naive UTC)."""
    if until is None and as_of is not None:
        until = day_end_utc(as_of, settings.tz)
    return run_gate(
        frames,
        as_of,
        until,
        now=now,
        max_order_age_days=settings.max_order_age_days,
        rules=ShopRules.from_settings(settings),
    )


def preflight(composer: MailComposer, selection: Selection, sample: int) -> list:
    """Render one recipient of each (variant, language) group, then an evenly spread sample of up to
    `sample` more (branches that only some recipients' data reach); any error stops the run before
    a mail goes out. Returns the first mails (one per group)."""
    eligible = selection.eligible
    if eligible.empty:
        return []
    keys = [c for c in ("variant", "language") if c in eligible.columns]
    firsts = eligible.groupby(keys, dropna=False, sort=False).head(1) if keys else eligible.head(1)
    mails = [composer.compose(row) for row in firsts.to_dict("records")]
    step = max(1, len(eligible) // sample) if sample else len(eligible)
    for row in eligible.iloc[::step].head(sample).to_dict("records"):
        composer.compose(row)
    return mails


@dataclass
class DryRunOutcome:
    """How one campaign's dry run ended: `completed`, or the `stage` that stopped it and why (naming the
    dataset and column where there is one)."""

    campaign: str
    completed: bool
    stage: str = "done"  # datasets, extract, data checks, selection, render, done
    reason: str = ""
    dataset: str = ""
    column: str = ""
    audience: int = 0
    eligible: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    findings: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckedData:
    """Extracted and checked frames, shared by the campaigns reading the same datasets and history."""

    frames: dict[str, pd.DataFrame]
    gate: GateReport


def _failure(campaign: str, stage: str, exc: BaseException, started: float) -> DryRunOutcome:
    explained = explain(exc)
    reason = explained.message if explained else unexpected(exc)
    dataset, column = "", ""
    for cause in (exc, exc.__cause__):
        if isinstance(cause, DatasetUnreadable):
            dataset, column = cause.dataset, ", ".join(cause.columns)
        elif isinstance(cause, DatasetMissing):
            dataset = ", ".join(cause.datasets)
        elif isinstance(cause, ContractError):
            dataset, column = getattr(cause, "dataset", ""), ", ".join(getattr(cause, "columns", ()))
        if dataset:
            break
    return DryRunOutcome(campaign, False, stage, reason, dataset, column, seconds=time.monotonic() - started)


def dry_run(
    campaign: Campaign,
    as_of: date,
    settings: Settings,
    shop: Engine,
    state: Engine,
    now: datetime,
    cache: dict[tuple, CheckedData] | None = None,
) -> DryRunOutcome:
    """`shopmail run CAMPAIGN --dry-run` without Prefect: the same steps, nothing recorded. `cache`
    keeps the extracted and checked data per (datasets, history days) for the next campaign."""
    started = time.monotonic()
    lacking = [d for d in missing_datasets(shop, campaign.datasets) if DATASETS[d].optional]
    if lacking:
        reason = (
            f"the shop has no {', '.join(lacking)} table or view, which {campaign.name} needs: the run is "
            "skipped (add the view, or switch the campaign off with SHOPMAIL_DISABLED_CAMPAIGNS)"
        )
        return DryRunOutcome(campaign.name, False, "datasets", reason, ", ".join(lacking))
    key = (tuple(campaign.datasets), campaign.history_days, as_of)
    checked = (cache or {}).get(key)
    if checked is None:
        try:
            frames = campaign_frames(shop, campaign, as_of, settings)
        except Exception as exc:  # noqa: BLE001 - reported as this campaign's outcome
            return _failure(campaign.name, "extract", exc, started)
        checked = CheckedData(frames, gate_frames(frames, as_of, settings, now))
        if cache is not None:
            cache[key] = checked
    gate = checked.gate
    outcome = DryRunOutcome(campaign.name, True, findings=gate.findings(), quarantined=gate.quarantined_count)
    if not gate.success:
        first = gate.failures[0]
        outcome.completed, outcome.stage = False, "data checks"
        outcome.reason = f"Data checks failed, nothing sent: {gate.failure_text()}"
        outcome.dataset, outcome.column = first.dataset, first.column
        outcome.seconds = time.monotonic() - started
        return outcome
    frames = clean_frames({k: v.copy() for k, v in checked.frames.items()}, gate)
    quarantined = {int(k) for k in gate.quarantined_keys("customers")}
    try:
        selection = select_recipients(
            campaign, frames, as_of, settings, state, quarantined, segment=campaign.segment
        )
    except Exception as exc:  # noqa: BLE001
        return _failure(campaign.name, "selection", exc, started)
    outcome.audience, outcome.eligible = selection.audience_size, len(selection.eligible)
    try:
        products = product_lookup(frames["products"]) if "products" in frames else {}
        preflight(MailComposer(campaign, settings, products), selection, settings.preflight_sample)
    except Exception as exc:  # noqa: BLE001
        failed = _failure(campaign.name, "render", exc, started)
        failed.reason = f"Template check failed, nothing sent: {failed.reason}"
        failed.audience, failed.eligible = outcome.audience, outcome.eligible
        return failed
    outcome.seconds = time.monotonic() - started
    return outcome


def dry_run_enabled(
    campaigns: dict[str, Campaign],
    enabled: dict[str, bool],
    as_of: date,
    settings: Settings,
    shop: Engine,
    state: Engine,
    now: datetime,
    progress: Callable[[str], None] | None = None,
) -> dict[str, DryRunOutcome]:
    """Dry-run every enabled campaign for `as_of` (`shopmail check-shop`); campaigns reading the same
    datasets and history share one extraction and one data check. `progress(name)` before each."""
    cache: dict[tuple, CheckedData] = {}
    outcomes = {}
    for name, spec in campaigns.items():
        if not enabled.get(name, True):
            continue
        if progress is not None:
            progress(name)
        try:
            outcomes[name] = dry_run(spec, as_of, settings, shop, state, now, cache)
        except Exception as exc:  # noqa: BLE001 - one campaign's surprise is its own outcome
            outcomes[name] = _failure(name, "datasets", exc, time.monotonic())
    return outcomes
