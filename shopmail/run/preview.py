"""Preview one customer's mail without Prefect, without sending or recording anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from config.settings import get_settings
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.mailer.base import OutgoingMail
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import product_lookup, select_recipients
from shopmail.shop.data_checks import ShopRules, clean_frames, run_gate
from shopmail.shop.extract import day_end_utc, extract
from shopmail.state import state_db
from shopmail.state.coupons import recorded_coupons


@dataclass
class PreviewResult:
    mail: OutgoingMail | None
    reason: str = ""


def _selection(campaign_name: str, as_of: date | None, segment: str | None = None):
    """(campaign, day, frames, state, selection), or a PreviewResult saying why there is none."""
    settings = get_settings()
    campaign = get_campaign(campaign_name)
    day = as_of or datetime.now(settings.tz).date()
    frames = extract(
        get_engine(settings.shop_url_resolved),
        campaign.datasets,
        day,
        settings.tz,
        campaign.history_days,
    )
    gate = run_gate(frames, day, day_end_utc(day, settings.tz), rules=ShopRules.from_settings(settings))
    if not gate.success:
        return PreviewResult(None, f"data checks failed: {gate.failure_text()}")
    frames = clean_frames(frames, gate)
    state = state_db.upgrade(settings.state_url_resolved)
    quarantined = {int(k) for k in gate.quarantined_keys("customers")}
    selection = select_recipients(campaign, frames, day, settings, state, quarantined, segment=segment)
    return campaign, day, frames, state, selection


def _composer(campaign, frames, state, rows: list[dict]) -> MailComposer:
    settings = get_settings()
    # a coupon already issued for a mail (an interrupted run) is shown as recorded; else the code it
    # will get (deterministic) with the expiry it would get today; nothing is issued
    keys = [str(row["message_key"]) for row in rows]
    issued = recorded_coupons(state, keys, settings.tz) if campaign.coupon and keys else {}
    products = product_lookup(frames["products"]) if "products" in frames else {}
    return MailComposer(campaign, settings, products, issued)


def preview_mail(campaign_name: str, customer_id: int, as_of: date | None = None) -> PreviewResult:
    """The mail `customer_id` would get from the campaign on `as_of`, or why none."""
    found = _selection(campaign_name, as_of)
    if isinstance(found, PreviewResult):
        return found
    campaign, day, frames, state, selection = found
    skipped = selection.skipped[selection.skipped["customer_id"] == customer_id]
    if not skipped.empty:
        return PreviewResult(None, f"skipped ({skipped['reason'].iloc[0]})")
    mine = selection.eligible[selection.eligible["customer_id"] == customer_id]
    if mine.empty:
        return PreviewResult(None, f"not in the audience on {day.isoformat()}")
    row = mine.to_dict("records")[0]
    return PreviewResult(_composer(campaign, frames, state, [row]).compose(row))


@dataclass
class SamplePreview:
    """The mails a sample of a segment's eligible customers would get, or why there are none."""

    mails: list[tuple[int, OutgoingMail]] = field(default_factory=list)
    eligible: int = 0
    reason: str = ""


def preview_segment_sample(
    campaign_name: str, segment: str, size: int, as_of: date | None = None
) -> SamplePreview:
    """The mails of up to `size` customers of `segment` who would get the campaign's mail on `as_of`
    (spread evenly over the eligible ones, one mail per customer); nothing is sent or recorded."""
    found = _selection(campaign_name, as_of, segment)
    if isinstance(found, PreviewResult):
        return SamplePreview(reason=found.reason)
    campaign, day, frames, state, selection = found
    eligible = selection.eligible.drop_duplicates("customer_id")
    if eligible.empty:
        return SamplePreview(reason=f"nobody in the segment gets this mail on {day.isoformat()}")
    step = max(1, len(eligible) // max(size, 1))
    rows = eligible.iloc[::step].head(size).to_dict("records")
    composer = _composer(campaign, frames, state, rows)
    return SamplePreview([(int(row["customer_id"]), composer.compose(row)) for row in rows], len(eligible))
