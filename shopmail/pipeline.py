"""The campaign pipeline as plain functions: audience -> recipients -> eligibility -> mails.

The Prefect tasks in `tasks/` wrap these; `shopmail preview` calls them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from config.settings import Settings
from segments.audiences import build_audience
from segments.eligibility import eligibility
from shopmail import ledger, state_db
from shopmail.campaigns import Campaign
from shopmail.feedback import unsubscribed_customers
from shopmail.links import unsubscribe_link
from shopmail.rendering import Renderer
from tasks.mailer.base import OutgoingMail

CUSTOMER_FIELDS = ["id", "email", "first_name", "last_name", "language", "marketing_consent"]
PRODUCT_FIELDS = ["id", "name", "brand", "category", "price", "url", "image_url"]


@dataclass
class Selection:
    """The outcome of selecting recipients for one campaign run."""

    audience_size: int
    eligible: pd.DataFrame
    skipped: pd.DataFrame

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


def attach_customers(campaign: Campaign, audience: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Audience rows joined with customer fields, with occasion and message keys."""
    people = customers[CUSTOMER_FIELDS].rename(columns={"id": "customer_id"})
    for name in ("first_name", "last_name"):  # NULL names reach pandas as NaN: templates want ""
        people[name] = people[name].fillna("")
    recipients = audience.merge(people, on="customer_id", how="inner")
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


def select_recipients(
    campaign: Campaign,
    frames: dict[str, pd.DataFrame],
    as_of: date,
    settings: Settings,
    state: Engine,
    quarantined_ids: set[int],
    window: tuple[datetime, datetime] | None = None,
) -> Selection:
    """Audience rule, then quarantine / address / consent / suppression / already-sent filters."""
    audience = build_audience(campaign.audience, frames, as_of, settings.tz, campaign.params, window)
    recipients = attach_customers(campaign, audience, frames["customers"])
    eligible, skipped = eligibility(
        recipients,
        marketing=campaign.marketing,
        quarantined_ids=quarantined_ids,
        suppressed=state_db.suppressed_emails(state, recipients["email"].dropna().tolist()),
        unsubscribed_ids=unsubscribed_customers(state, recipients["customer_id"].tolist()),
        done_keys=ledger.already_done(state, recipients["message_key"].tolist(), campaign.name),
    )
    return Selection(len(audience), eligible, skipped)


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
    """Builds the template context and the `OutgoingMail` of one recipient."""

    def __init__(self, campaign: Campaign, settings: Settings, products: dict[int, dict[str, Any]]) -> None:
        self.campaign = campaign
        self.settings = settings
        self.products = products
        self.renderer = Renderer(
            campaign.template, settings.templates_dir, default_language=settings.default_language
        )
        self.shop = {
            "name": settings.shop_name,
            "url": settings.shop_url,
            "support_email": settings.support_email,
            "support_phone": settings.support_phone,
        }
        self.utm = {
            "source": settings.utm_source,
            "medium": settings.utm_medium,
            "campaign": campaign.utm,
        }

    def unsubscribe_url(self, customer_id: int) -> str | None:
        if not self.campaign.marketing:
            return None
        secret = self.settings.unsubscribe_secret.get_secret_value()
        return unsubscribe_link(self.settings.unsubscribe_url, secret, customer_id, self.campaign.name)

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
        return context

    def compose(self, row: dict[str, Any]) -> OutgoingMail:
        """Render one recipient's mail (raises `TemplateError` on a template problem)."""
        context = self.context(row)
        rendered = self.renderer.render(row.get("language"), context)
        headers: dict[str, str] = {}
        if context["unsubscribe_url"]:
            headers["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        name = " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p)
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
        )
