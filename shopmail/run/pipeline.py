"""The campaign pipeline as plain functions: audience -> recipients -> eligibility -> mails.

The Prefect tasks in `tasks/` wrap these; `shopmail preview` calls them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from config.settings import Settings
from segments.arbitration import HISTORY_COLUMNS, CapRule, apply_frequency_cap
from segments.audiences.registry import build_audience
from segments.eligibility import address_keys, eligibility
from segments.holdout import split_holdout
from segments.local_time import local_to_utc
from segments.segment_snapshot import SegmentSnapshot, restrict_to_segment
from segments.send_time import ZONE_COLUMN, customer_zones, quiet_hours, send_at
from shopmail.campaigns import Campaign
from shopmail.campaigns import registry as campaign_registry
from shopmail.mail.links import add_utm, unsubscribe_link
from shopmail.mail.rendering import Renderer
from shopmail.mailer.base import OutgoingMail
from shopmail.state import ledger, state_db
from shopmail.state.coupons import Coupon, coupon_for
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
    audience = build_audience(campaign.audience, frames, as_of, settings.tz, campaign.params, window)
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
        skipped = pd.concat([skipped, capped]) if len(capped) else skipped
    eligible, holdout = split_holdout(
        eligible, campaign.name, campaign.holdout_percent if campaign.marketing else 0
    )
    outcomes = pd.concat([skipped, holdout.assign(reason="holdout")]) if len(holdout) else skipped
    snapshot.with_outcomes(eligible["customer_id"], outcomes)
    return Selection(len(audience), eligible, skipped, snapshot, holdout)


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

    def keep(candidates: pd.DataFrame, history: pd.DataFrame) -> pd.Series:
        kept, _ = policy.split(candidates, history)
        return candidates["message_key"].isin(kept["message_key"])

    return ledger.CapCheck(tuple(sorted(policy.priorities)), policy.since, keep)


def product_lookup(products: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """Product id -> the fields templates use."""
    frame = products[PRODUCT_FIELDS].astype(object).where(products[PRODUCT_FIELDS].notna(), None)
    return {int(row["id"]): row for row in frame.to_dict("records")}


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        return value.item()
    return value


class MailComposer:
    """Builds the template context and the `OutgoingMail` of one recipient.

    With a coupon policy, each mail gets its personal coupon (`coupon` in templates): the one already
    issued for it (`issued`, from `coupons.recorded_coupons`) or, if none, the one it would be issued
    now; `self.coupons` keeps every coupon composed, by message key, for `coupons.issue_coupons`.
    """

    def __init__(
        self,
        campaign: Campaign,
        settings: Settings,
        products: dict[int, dict[str, Any]],
        issued: Mapping[str, Coupon] | None = None,
    ) -> None:
        self.campaign = campaign
        self.settings = settings
        self.products = products
        self.coupons: dict[str, Coupon] = dict(issued or {})
        self.renderer = Renderer(
            campaign.template,
            settings.templates_dir,
            default_language=settings.default_language,
            currency=settings.currency,
        )
        self.shop = {
            "name": settings.shop_name,
            "url": settings.shop_url,
            "cart_url": settings.shop_link(settings.cart_path),
            "account_url": settings.shop_link(settings.account_path),
            "orders_url": settings.shop_link(settings.orders_path),
            "currency": settings.currency,
            "support_email": settings.support_email,
            "support_phone": settings.support_phone,
        }
        self.utm = {
            "source": settings.utm_source,
            "medium": settings.utm_medium,
            "campaign": campaign.utm,
        }
        self.shop["social"] = [  # UTM-tagged once per run, not per mail
            (name, add_utm(url, **self.utm, content="social")) for name, url in settings.social_links.items()
        ]
        self.quiet = quiet_hours(settings.quiet_hours) if campaign.marketing else None
        self._send_at: dict[tuple[object, int], int | None] = {}  # (zone, minute) -> send_at

    def unsubscribe_url(self, customer_id: int) -> str | None:
        if not self.campaign.marketing:
            return None
        secret = self.settings.unsubscribe_secret.get_secret_value()
        return unsubscribe_link(self.settings.unsubscribe_url, secret, customer_id, self.campaign.name)

    def coupon(self, row: dict[str, Any]) -> Coupon | None:
        """The recipient's personal coupon (None without a coupon policy); nothing is issued here."""
        policy = self.campaign.coupon
        if policy is None:
            return None
        key = str(row["message_key"])
        if key not in self.coupons:
            self.coupons[key] = coupon_for(
                policy,
                key,
                int(row["customer_id"]),
                state_db.utcnow().replace(microsecond=0),
                self.settings.tz,
                self.settings.coupon_secret.get_secret_value(),
            )
        return self.coupons[key]

    def context(self, row: dict[str, Any]) -> dict[str, Any]:
        customer_id = int(row["customer_id"])
        context = {k: _plain(v) for k, v in row.items()}
        for key, value in row.items():  # list columns hold product ids: give templates the products
            if isinstance(value, list):
                context[key] = [self.products[i] for i in value if i in self.products]
        context.update(
            shop=self.shop,
            utm=self.utm,
            customer={
                "id": customer_id,
                "first_name": row.get("first_name") or "",
                "last_name": row.get("last_name") or "",
            },
            campaign={"name": self.campaign.name, "title": self.campaign.title},
            unsubscribe_url=self.unsubscribe_url(customer_id),
        )
        coupon = self.coupon(row)
        if coupon is not None:
            context["coupon"] = coupon.template_context()
        else:
            context.setdefault("coupon", None)  # templates may test `{% if coupon %}`
        return context

    def scheduled(self, zone: object) -> int | None:
        """Marketing mail composed in the customer's quiet hours: deliver when they end (cached per
        zone and minute: a batch composes thousands of mails in a few zones)."""
        if self.quiet is None:
            return None
        now = state_db.utcnow()
        key = (zone, int(now.timestamp() // 60))
        if key not in self._send_at:
            self._send_at[key] = send_at(zone, now, self.quiet, self.settings.timezone)
        return self._send_at[key]

    def compose(self, row: dict[str, Any]) -> OutgoingMail:
        """Render one recipient's mail (raises `TemplateError` on a template problem)."""
        context = self.context(row)
        rendered = self.renderer.render(row.get("language"), context)
        headers: dict[str, str] = {}
        if context["unsubscribe_url"]:
            headers["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        name = " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p)
        scheduled = self.scheduled(row.get(ZONE_COLUMN))
        return OutgoingMail(
            message_key=str(row["message_key"]),
            to_email=str(row["email"]),
            to_name=name,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            from_email=self.settings.sender_email,
            from_name=self.settings.sender_name,
            reply_to=self.settings.reply_to,
            headers=headers,
            custom_args={
                "campaign": self.campaign.name,
                "occasion": str(row["occasion_key"]),
                "customer_id": str(int(row["customer_id"])),
            },
            categories=self.campaign.categories,
            send_at=scheduled,
            click_tracking=self.campaign.click_tracking,
        )
