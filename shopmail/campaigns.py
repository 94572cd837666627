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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.settings import get_settings

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
# SendGrid's category rules (v3 mail/send errors page): at most 10 per mail, each at most 255 ASCII
# characters, no duplicates. `SENDER_CATEGORIES` are the categories the SendGrid sender adds to every
# mail besides the campaign's (none today); they count against the 10.
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
SENDER_CATEGORIES: tuple[str, ...] = ()


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
    enabled: bool = Field(
        True,
        description="False: not scheduled, not run (SHOPMAIL_ENABLED_CAMPAIGNS / SHOPMAIL_DISABLED_CAMPAIGNS "
        "override it per shop).",
    )
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
    categories: tuple[str, ...] = Field(
        (),
        description=f"SendGrid categories of every mail (at most {MAX_CATEGORIES - len(SENDER_CATEGORIES)}, "
        f"ASCII, at most {MAX_CATEGORY_LENGTH} characters each, no duplicates).",
    )
    click_tracking: bool = Field(
        True,
        description="False: SendGrid leaves the links as they are (no click-tracking redirect), for mails "
        "whose links carry a secret, e.g. the password-reset token.",
    )
    max_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Plausibility guard: an eligible audience above this share of all customers pauses "
        "for approval even on a first run (birthday 0.01: ~3.7x a day's average; none: no such guard).",
    )
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

    @field_validator("categories")
    @classmethod
    def _sendgrid_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = category_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
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


def category_problems(categories: tuple[str, ...], added: tuple[str, ...] = SENDER_CATEGORIES) -> list[str]:
    """Why SendGrid would refuse a mail with these `categories` plus the sender's `added` ones
    (empty: it would not)."""
    problems = []
    total = len(categories) + len(added)
    if total > MAX_CATEGORIES:
        extra = f" (the sender adds {len(added)})" if added else ""
        problems.append(f"{total} categories, SendGrid allows at most {MAX_CATEGORIES} per mail{extra}")
    for category in categories:
        if not category:
            problems.append("a category is empty")
        elif not category.isascii():
            problems.append(f"category {category!r} is not ASCII (SendGrid refuses non-ASCII categories)")
        elif len(category) > MAX_CATEGORY_LENGTH:
            problems.append(f"category {category[:20]!r}... is longer than {MAX_CATEGORY_LENGTH} characters")
    duplicates = sorted({c for c in (*categories, *added) if (*categories, *added).count(c) > 1})
    if duplicates:
        problems.append(f"duplicate categories {duplicates} (SendGrid needs a unique list)")
    return problems


class CampaignError(ValueError):
    """A campaign file is missing or invalid."""


def _reason(exc: Exception) -> str:
    """One line per problem: 'schedule: bad cron ...' rather than pydantic's multi-line report."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
    return str(exc)


def load_campaign(path: Path) -> Campaign:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        campaign = Campaign(**data)
    except (tomllib.TOMLDecodeError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CampaignError(f"{path.name}: {_reason(exc)}") from exc
    if campaign.name != path.stem:
        raise CampaignError(f"{path.name}: name '{campaign.name}' must match the file name")
    if campaign.coupon is not None:  # the shop's coupon-code column must hold the codes (OpenCart: 20)
        from config.settings import get_settings
        from shopmail.coupon_codes import random_chars_for

        try:
            random_chars_for(campaign.coupon.prefix, get_settings().coupon_code_max_length)
        except ValueError as exc:
            raise CampaignError(f"{path.name}: coupon.prefix: {exc}") from exc
    return campaign


class Registry(dict[str, Campaign]):
    """The valid campaigns by name; `broken` holds the files that did not load (name -> reason): a
    broken file disables only its own campaign."""

    def __init__(self, campaigns: dict[str, Campaign], broken: dict[str, str]) -> None:
        super().__init__(campaigns)
        self.broken = broken


@lru_cache(maxsize=4)
def registry(folder: Path | None = None) -> Registry:
    """Every valid campaign file in `folder` (default `CAMPAIGNS_DIR`), by name (broken ones in `.broken`)."""
    folder = folder or CAMPAIGNS_DIR
    campaigns: dict[str, Campaign] = {}
    broken: dict[str, str] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            campaigns[path.stem] = load_campaign(path)
        except CampaignError as exc:
            broken[path.stem] = str(exc)
    return Registry(campaigns, broken)


def broken_campaigns(folder: Path | None = None) -> dict[str, str]:
    """Campaign files that did not load: name -> reason (file name first)."""
    return dict(registry(folder).broken)


def get_campaign(name: str, folder: Path | None = None) -> Campaign:
    campaigns = registry(folder)
    if name in campaigns.broken:
        raise CampaignError(
            f"campaign '{name}' is disabled, its file is broken: {campaigns.broken[name]}. "
            "Fix the file; the other campaigns are not affected"
        )
    if name not in campaigns:
        raise CampaignError(f"unknown campaign '{name}'; known: {', '.join(campaigns) or 'none'}")
    return campaigns[name]


def campaign_names(folder: Path | None = None) -> list[str]:
    return list(registry(folder))


def is_enabled(spec: Campaign, disabled: list[str] | tuple = (), enabled: list[str] | tuple = ()) -> bool:
    """Whether the shop wants `spec`: its file's `enabled`, switched on by `enabled` (the setting
    SHOPMAIL_ENABLED_CAMPAIGNS), switched off by `disabled` (SHOPMAIL_DISABLED_CAMPAIGNS, which wins)."""
    return (spec.enabled or spec.name in enabled) and spec.name not in disabled


def disabled_reason(spec: Campaign, disabled: list[str] | tuple = (), enabled: list[str] | tuple = ()) -> str:
    """Why `spec` is switched off ('' when it is not)."""
    if spec.name in disabled:
        return "switched off by SHOPMAIL_DISABLED_CAMPAIGNS"
    if not is_enabled(spec, disabled, enabled):
        return "its file says enabled = false (SHOPMAIL_ENABLED_CAMPAIGNS switches it on)"
    return ""


def enabled_campaigns(folder: Path | None = None) -> dict[str, Campaign]:
    """The valid campaigns the shop's settings leave switched on."""
    settings = get_settings()
    return {
        name: spec
        for name, spec in registry(folder).items()
        if is_enabled(spec, settings.disabled_campaigns, settings.enabled_campaigns)
    }


class CampaignDisabled(CampaignError):
    """The campaign is switched off for this shop (its file or the settings)."""


def require_enabled(spec: Campaign) -> None:
    """Raise `CampaignDisabled` (saying how to switch it on) when the shop switched `spec` off."""
    settings = get_settings()
    reason = disabled_reason(spec, settings.disabled_campaigns, settings.enabled_campaigns)
    if reason:
        raise CampaignDisabled(f"campaign '{spec.name}' is disabled: {reason}; nothing was run")
