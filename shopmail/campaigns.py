"""Campaign model and registry: one TOML file per campaign in `config/campaigns/`."""

from __future__ import annotations

import string
import tomllib
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAMPAIGNS_DIR = Path(__file__).resolve().parent.parent / "config" / "campaigns"
KNOWN_DATASETS = (
    "customers",
    "orders",
    "order_items",
    "products",
    "carts",
    "cart_items",
    "coupons",
    "password_resets",
)


class CampaignKind(StrEnum):
    service = "service"
    trigger = "trigger"
    occasion = "occasion"
    mass = "mass"


class CouponPolicy(BaseModel):
    """A personal single-use coupon issued with each mail of the campaign (code in the template as
    `coupon.code`). Issued into the shop's `coupons` table and recorded in the state DB, once per mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float = Field(gt=0, description="Discount: percent when `percent`, else money.")
    percent: bool = True
    valid_days: int = Field(14, ge=1, le=365, description="Days from issue until it expires.")
    prefix: str = Field("SM", pattern=r"^[A-Z0-9]{1,8}$", description="Code prefix, e.g. BDAY.")
    note: str = ""


class Campaign(BaseModel):
    """What a campaign file declares. Adding a campaign = one such file + one template folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    title: str
    description: str = ""
    kind: CampaignKind
    audience: str = Field(description="Audience builder registered in `segments.audiences.registry`.")
    occasion_key: str = Field(description="Format string over audience columns, e.g. 'order:{order_id}'.")
    template: str = Field(description="Folder in email_templates/.")
    schedule: str | None = Field(None, description="Cron in the shop time zone.")
    priority: int = Field(50, ge=0, le=100)
    marketing: bool = Field(description="True: needs marketing consent, carries unsubscribe.")
    datasets: tuple[str, ...] = ("customers",)
    history_days: int = Field(365, ge=1, le=3650, description="How far back orders are read.")
    params: dict[str, Any] = Field(default_factory=dict)
    polled: bool = Field(
        False,
        description="Service mail driven by the poller: sent for events since the last watermark.",
    )
    segment: str | None = Field(None, description="Default segment (config/segments.toml); mass runs.")
    coupon: CouponPolicy | None = None
    utm_campaign: str | None = None
    categories: tuple[str, ...] = ()
    holdout_percent: float = Field(
        0,
        ge=0,
        le=50,
        description="Percent of eligible customers (stable per customer, segments/holdout.py) who get "
        "nothing, to measure the campaign's uplift (`shopmail report`). Marketing campaigns only.",
    )

    @field_validator("datasets")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(KNOWN_DATASETS)
        if unknown:
            raise ValueError(f"unknown datasets {sorted(unknown)}; known: {KNOWN_DATASETS}")
        return value

    @model_validator(mode="after")
    def _holdout_marketing_only(self) -> Campaign:
        if self.holdout_percent and not self.marketing:
            raise ValueError("holdout_percent is for marketing campaigns only: service mails never hold out")
        return self

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronSim(value, datetime(2026, 1, 1))
            except CronSimError as exc:
                raise ValueError(f"bad cron '{value}': {exc}") from exc
        return value

    @field_validator("occasion_key")
    @classmethod
    def _format(cls, value: str) -> str:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f]
        if not fields:
            raise ValueError("occasion_key must use at least one audience column, e.g. {order_id}")
        return value

    @property
    def occasion_fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.occasion_key) if f]

    @property
    def utm(self) -> str:
        return self.utm_campaign or self.name


class CampaignError(ValueError):
    """A campaign file is missing or invalid."""


def load_campaign(path: Path) -> Campaign:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        campaign = Campaign(**data)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise CampaignError(f"{path.name}: {exc}") from exc
    if campaign.name != path.stem:
        raise CampaignError(f"{path.name}: name '{campaign.name}' must match the file name")
    return campaign


@lru_cache(maxsize=4)
def registry(folder: Path = CAMPAIGNS_DIR) -> dict[str, Campaign]:
    """Every campaign file in `folder`, by name."""
    return {p.stem: load_campaign(p) for p in sorted(folder.glob("*.toml"))}


def get_campaign(name: str, folder: Path = CAMPAIGNS_DIR) -> Campaign:
    campaigns = registry(folder)
    if name not in campaigns:
        raise CampaignError(f"unknown campaign '{name}'; known: {', '.join(campaigns) or 'none'}")
    return campaigns[name]


def campaign_names(folder: Path = CAMPAIGNS_DIR) -> list[str]:
    return list(registry(folder))
