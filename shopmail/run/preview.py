"""Preview one customer's mail without Prefect, without sending or recording anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from config.settings import get_settings
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.mailer.base import OutgoingMail
from shopmail.run.pipeline import MailComposer, product_lookup, select_recipients
from shopmail.shop.data_checks import run_gate
from shopmail.shop.extract import extract
from shopmail.state import state_db
from shopmail.state.coupons import recorded_coupons


@dataclass
class PreviewResult:
    mail: OutgoingMail | None
    reason: str = ""


def preview_mail(campaign_name: str, customer_id: int, as_of: date | None = None) -> PreviewResult:
    """The mail `customer_id` would get from the campaign on `as_of`, or why none."""
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
    gate = run_gate(frames)
    if not gate.success:
        return PreviewResult(None, f"data checks failed: {gate.failure_text()}")
    state = state_db.upgrade(settings.state_url_resolved)
    quarantined = {int(k) for k in gate.quarantined_keys("customers")}
    selection = select_recipients(campaign, frames, day, settings, state, quarantined)
    skipped = selection.skipped[selection.skipped["customer_id"] == customer_id]
    if not skipped.empty:
        return PreviewResult(None, f"skipped ({skipped['reason'].iloc[0]})")
    mine = selection.eligible[selection.eligible["customer_id"] == customer_id]
    if mine.empty:
        return PreviewResult(None, f"not in the audience on {day.isoformat()}")
    row = mine.to_dict("records")[0]
    # a coupon already issued for this mail (an interrupted run) is shown as recorded; else the code it
    # will get (deterministic) with the expiry it would get today; nothing is issued
    issued = recorded_coupons(state, [str(row["message_key"])], settings.tz) if campaign.coupon else {}
    products = product_lookup(frames["products"]) if "products" in frames else {}
    composer = MailComposer(campaign, settings, products, issued)
    return PreviewResult(composer.compose(row))
