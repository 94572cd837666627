"""The campaign pipeline as plain functions: audience -> recipients -> eligibility -> mails.

The Prefect tasks in `tasks/` wrap these; `shopmail preview` calls them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from config.settings import Settings
from segments.arbitration import HISTORY_COLUMNS, CapRule, apply_frequency_cap, cap_mask
from segments.audiences.empty_reasons import audience_empty_reason
from segments.audiences.registry import build_audience
from segments.eligibility import address_keys, eligibility
from segments.holdout import split_holdout
from segments.local_time import local_to_utc
from segments.segment_snapshot import SegmentSnapshot, restrict_to_segment
from segments.send_time import ZONE_COLUMN, customer_zones
from segments.series import ENTRY_KEY_COLUMN, STEP_COLUMN, step_occasion
from shopmail.bulk import collector_paused
from shopmail.campaigns import Campaign
from shopmail.campaigns import registry as campaign_registry
from shopmail.run.send_hours import with_send_hours
from shopmail.run.series_run import HOLDOUT_COLUMN, SeriesBook, select_series
from shopmail.state import ledger, state_db
from shopmail.state.feedback import unsubscribed_customers

CUSTOMER_FIELDS = ["id", "email", "first_name", "last_name", "language", "marketing_consent"]
PRODUCT_FIELDS = ["id", "name", "brand", "category", "price", "url", "image_url"]


@dataclass
class Selection:
    """The outcome of selecting recipients for one campaign run."""

    audience_size: int
    eligible: pd.DataFrame
    skipped: pd.DataFrame
    # who the audience was and what the segment rule saw: `write_segment_snapshot(data_dir, run_id, ...)`
    segment_snapshot: SegmentSnapshot | None = None
    # eligible customers in the campaign's random holdout (marketing only): get nothing, recorded in the
    # ledger as `holdout` on real runs (flows/steps.py), compared with the mailed by `shopmail report`
    holdout: pd.DataFrame = field(default_factory=pd.DataFrame)
    # a series' new entries, exits and skipped steps (written by a real run before it sends)
    series: SeriesBook | None = None
    # why the audience is empty (segments/audiences/empty_reasons.py; `segment_empty`): its words in
    # shopmail/run/vocabulary.py `ZERO`; None when it is not
    empty: tuple[str, dict[str, str]] | None = None

    def skipped_by_reason(self) -> dict[str, int]:
        if self.skipped.empty:
            return {}
        return {str(k): int(v) for k, v in self.skipped["reason"].value_counts().items()}


def message_keys(campaign: str, occasion_keys: pd.Series, customer_ids: pd.Series) -> list[str]:
    """Ledger message keys of each (occasion key, customer) pair."""
    return [
        ledger.message_key(campaign, occ, cid)
        for occ, cid in zip(occasion_keys.tolist(), customer_ids.tolist(), strict=True)
    ]


_CONTROL = r"[\x00-\x1f\x7f\u2028\u2029]+"
_INVISIBLE = r"[\u00ad\u200b-\u200f\u2060\ufeff]"


def clean_names(names: pd.Series) -> pd.Series:
    """Names fit for a header and a greeting: control characters (CR, LF, tab...) become a space,
    zero-width and soft-hyphen characters go, runs of spaces collapse, ends are trimmed; NULL is ''."""
    text = names.fillna("").astype(str).str.replace(_INVISIBLE, "", regex=True)
    return text.str.replace(_CONTROL, " ", regex=True).str.replace(r" {2,}", " ", regex=True).str.strip()


def attach_customers(campaign: Campaign, audience: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Audience rows joined with customer fields, with occasion and message keys."""
    fields = CUSTOMER_FIELDS + [c for c in ("registered_at",) if c in customers and c not in audience]
    people = customers[fields].rename(columns={"id": "customer_id"})
    recipients = audience.merge(people, on="customer_id", how="inner")
    for name in ("first_name", "last_name"):  # the recipients only; NULL names: templates want ""
        recipients[name] = clean_names(recipients[name])
    columns = campaign.occasion_fields
    if campaign.is_series and STEP_COLUMN in recipients:  # each step its own occasion: cart:123:step2
        recipients["occasion_key"] = [
            step_occasion(key, int(step))
            for key, step in zip(recipients[ENTRY_KEY_COLUMN], recipients[STEP_COLUMN], strict=True)
        ]
        recipients["message_key"] = message_keys(
            campaign.name, recipients["occasion_key"], recipients["customer_id"]
        )
        return recipients.reset_index(drop=True)
    recipients["occasion_key"] = (
        [
            campaign.occasion_key.format(**dict(zip(columns, values, strict=True)))
            for values in zip(*(recipients[c].tolist() for c in columns), strict=True)
        ]
        if len(recipients)
        else pd.Series(dtype=object)
    )
    recipients["message_key"] = message_keys(
        campaign.name, recipients["occasion_key"], recipients["customer_id"]
    )
    return recipients.reset_index(drop=True)


def unsubscribed_addresses(state: Engine, recipients: pd.DataFrame, customers: pd.DataFrame) -> list[str]:
    """Address keys of the recipients that an unsubscribed account shares (any customer row)."""
    keys = address_keys(recipients["email"])
    all_keys = address_keys(customers["email"])
    sharing = customers.loc[all_keys.isin(set(keys) - {""}), "id"].tolist()
    gone = set(unsubscribed_customers(state, sharing))
    return sorted(set(all_keys[customers["id"].isin(gone)]))


def select_recipients(
    campaign: Campaign,
    frames: dict[str, pd.DataFrame],
    as_of: date,
    settings: Settings,
    state: Engine,
    quarantined_ids: set[int],
    window: tuple[datetime, datetime] | None = None,
    segment: str | None = None,
) -> Selection:
    """Audience rule, restricted to `segment` (else the campaign's default segment; '' or 'all': none;
    see config/segments.toml), then quarantine / address / consent / suppression / already-sent filters,
    then the campaign's random holdout (`holdout_percent`, marketing only) into `Selection.holdout`.
    Raises `SegmentError` for an unknown segment or one needing datasets the campaign does not read."""
    book = None
    if campaign.is_series:  # the steps due now (shopmail/run/series_run.py)
        audience, book = select_series(campaign, frames, as_of, settings.tz, state, window)
    else:
        audience = build_audience(campaign.audience, frames, as_of, settings.tz, campaign.params, window)
    built = len(audience)
    audience, snapshot = restrict_to_segment(
        campaign.name,
        campaign.datasets,
        campaign.segment if segment is None else segment,
        frames,
        audience,
        as_of,
        settings.tz,
    )
    recipients = attach_customers(campaign, audience, frames["customers"])
    eligible, skipped = eligibility(
        recipients,
        marketing=campaign.marketing,
        quarantined_ids=quarantined_ids,
        suppressed=state_db.suppressed_emails(state, recipients["email"].dropna().tolist()),
        unsubscribed_ids=unsubscribed_customers(state, recipients["customer_id"].tolist()),
        unsubscribed_addresses=unsubscribed_addresses(state, recipients, frames["customers"])
        if campaign.marketing
        else (),
        done_keys=ledger.already_done(state, recipients["message_key"].tolist(), campaign.name),
    )
    if campaign.marketing:  # frequency cap + priority, local time zones (service mails are exempt)
        eligible, capped = arbitrate(campaign, eligible, frames["customers"], settings, state)
        if campaign.send_time == "preferred":  # each customer's hour (shopmail/run/send_hours.py)
            eligible = with_send_hours(campaign, eligible, frames.get("orders"), state, settings)
        skipped = pd.concat([skipped, capped]) if len(capped) else skipped
    if campaign.is_series:  # one group for the whole series: the entry's, decided when it entered
        held = eligible[HOLDOUT_COLUMN].astype(bool) if len(eligible) else pd.Series(dtype=bool)
        eligible, holdout = eligible[~held].copy(), eligible[held].copy()
    else:
        eligible, holdout = split_holdout(
            eligible, campaign.name, campaign.holdout_percent if campaign.marketing else 0
        )
    outcomes = pd.concat([skipped, holdout.assign(reason="holdout")]) if len(holdout) else skipped
    snapshot.with_outcomes(eligible["customer_id"], outcomes)
    empty = None
    if not len(audience):  # why nobody: the day (sale over, no birthday) or the segment
        empty = audience_empty_reason(campaign.audience, campaign.params, as_of)
        if built:
            name = str(snapshot.segment or segment)
            title = (snapshot.definitions.get(name) or {}).get("title") or name.replace("_", " ")
            empty = ("segment_empty", {"audience": f"{built:,}", "segment": f"«{title}»"})
    return Selection(len(audience), eligible, skipped, snapshot, holdout, book, empty)


@dataclass(frozen=True)
class CapPolicy:
    """The caps of one marketing campaign at `now` (rules in segments/arbitration.py): what history to
    read (`campaigns` created since `since`) and how to apply it (`split`)."""

    campaign: Campaign
    rule: CapRule
    priorities: dict[str, int]
    now: datetime
    day_start: datetime

    @property
    def since(self) -> datetime:
        return min(self.now - timedelta(days=self.rule.window_days), self.day_start)

    def split(self, candidates: pd.DataFrame, history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(kept, capped with reason `frequency_cap`)."""
        return apply_frequency_cap(
            candidates,
            history,
            priority=self.campaign.priority,
            priorities=self.priorities,
            now=self.now,
            day_start=self.day_start,
            rule=self.rule,
        )


def cap_policy(campaign: Campaign, settings: Settings, now: datetime) -> CapPolicy:
    """The caps, the marketing campaigns' priorities and the start of the shop-local day of `now`."""
    rule = CapRule(settings.frequency_cap, settings.frequency_window_days, settings.daily_cap)
    priorities = {c.name: c.priority for c in campaign_registry().values() if c.marketing}
    priorities[campaign.name] = campaign.priority
    local_today = now.replace(tzinfo=UTC).astimezone(settings.tz).date()
    return CapPolicy(campaign, rule, priorities, now, local_to_utc(local_today, settings.tz))


def arbitrate(
    campaign: Campaign,
    eligible: pd.DataFrame,
    customers: pd.DataFrame,
    settings: Settings,
    state: Engine,
    now: datetime | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A marketing campaign's (kept, capped with reason `frequency_cap`): the frequency cap and priority
    over the send ledger (rules in segments/arbitration.py); kept rows get their customer's time zone
    (`local_tz`, from the city: segments/send_time.py) for quiet hours when composed."""
    policy = cap_policy(campaign, settings, now or state_db.utcnow())
    history = (
        ledger.recent_mails(state, eligible["customer_id"].tolist(), policy.priorities, policy.since)
        if policy.rule.active and len(eligible)
        else pd.DataFrame(columns=HISTORY_COLUMNS)
    )
    kept, capped = policy.split(eligible, history)
    kept[ZONE_COLUMN] = customer_zones(kept["customer_id"], customers, settings.timezone)
    return kept, capped


def claim_cap(campaign: Campaign, settings: Settings, now: datetime | None = None) -> ledger.CapCheck | None:
    """The frequency/daily cap re-checked at claim time (under the customers' locks) for a marketing
    campaign's batch: the same rules as `arbitrate`, over the claimed rows committed so far."""
    policy = cap_policy(campaign, settings, now or state_db.utcnow())
    if not campaign.marketing or not policy.rule.active:
        return None

    def keep(candidates: list[tuple[int, str]], history: list[tuple]) -> list[bool]:
        return cap_mask(
            candidates,
            history,
            priority=policy.campaign.priority,
            priorities=policy.priorities,
            now=policy.now,
            day_start=policy.day_start,
            rule=policy.rule,
        )

    return ledger.CapCheck(tuple(sorted(policy.priorities)), policy.since, keep)


def product_lookup(products: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """Product id -> the fields templates use."""
    frame = products[PRODUCT_FIELDS].astype(object).where(products[PRODUCT_FIELDS].notna(), None)
    return {int(row["id"]): row for row in records(frame)}


def _python_values(column: pd.Series) -> list[Any] | None:
    """The column as `to_dict("records")` gives its values, or None where only pandas' own boxing is
    known to be right (nullable and categorical columns, numpy scalars inside an object column)."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (
        isinstance(dtype, pd.StringDtype) and dtype.storage == "python"
    ):
        return column.tolist()
    if not isinstance(dtype, np.dtype):
        return None
    values = column.tolist()
    if dtype.kind == "O" and any(isinstance(value, np.generic) for value in values):
        return None
    return values


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """`frame.to_dict("records")`, the same values and types, about twice as fast on the columns a
    campaign's rows have: each column is turned into Python values once, then zipped into rows, with
    the cyclic collector paused (661,252 rows: 1.8 s instead of 7.5 s). Other columns take pandas'
    own path."""
    columns = list(frame.columns)
    if not columns or len(set(columns)) != len(columns):
        return frame.to_dict("records")  # no columns, or a name twice: pandas' own rules
    with collector_paused():
        values = [_python_values(frame[column]) for column in columns]
        if any(column is None for column in values):
            return frame.to_dict("records")
        return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def sharing_order(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with recipients likely to share one rendered body next to each other (same variant,
    language, and which name parts are empty), in a stable order: a batch then makes a few
    1,000-recipient requests instead of many small ones."""
    keys = pd.DataFrame({c: rows[c].astype(str).to_numpy() for c in ("variant", "language") if c in rows})
    for column in ("first_name", "last_name"):
        if column in rows:
            keys[column] = rows[column].fillna("").astype(str).eq("").to_numpy()
    if keys.empty or not len(keys.columns):
        return rows
    order = keys.sort_values(list(keys.columns), kind="stable").index.to_numpy()
    return rows.iloc[order]


def batch_products(
    rows: list[dict[str, Any]] | pd.DataFrame, products: dict[int, dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """The products a batch's rows refer to (list columns hold product ids): what a task needs, and
    all that is pickled for it, instead of the whole catalogue."""
    if isinstance(rows, pd.DataFrame):
        values = (v for column in rows.columns if rows[column].dtype == object for v in rows[column])
    else:
        values = (value for row in rows for value in row.values())
    wanted = {i for value in values if isinstance(value, list) for i in value}
    return {i: products[i] for i in wanted if i in products}
