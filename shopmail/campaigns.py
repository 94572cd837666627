"""Campaign model and registry: one TOML file per campaign in `config/campaigns/`."""

from __future__ import annotations

import re
import string
import tomllib
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

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


WINNER_KINDS = (CampaignKind.mass, CampaignKind.occasion)  # kinds an A/B test may pick a winner in


class CouponPolicy(BaseModel):
    """A personal single-use coupon issued with each mail of the campaign (code in the template as
    `coupon.code`). Issued into the shop's `coupons` table and recorded in the state DB, once per mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float = Field(gt=0, description="Discount: percent when `percent`, else money.")
    percent: bool = Field(True, description="True: `value` is a percent; false: an amount of money.")
    valid_days: int = Field(14, ge=1, le=365, description="Days from issue until it expires.")
    prefix: str = Field("SM", pattern=r"^[A-Z0-9]{1,8}$", description="Code prefix, e.g. BDAY.")
    note: str = Field("", description="The note the coupon carries in the shop's coupon table.")


class WinnerMetric(StrEnum):
    """What decides an A/B test (shopmail/results/ab_stats.py says how each is tested)."""

    click_rate = "click_rate"
    open_rate = "open_rate"
    orders_per_recipient = "orders_per_recipient"
    revenue_per_recipient = "revenue_per_recipient"


Localized = str | dict[str, str]  # one text for every language, or one per language: {ru = "...", en = "..."}


class TestVariant(BaseModel):
    """One variant of an A/B test: what it changes (anything not given is the campaign's own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False  # not a pytest test class

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$", description="Short name: a, b, short_subject.")
    subject: Localized | None = Field(
        None, description="Subject (Jinja, like subject.j2) instead of the template's."
    )
    preheader: Localized | None = Field(
        None, description="Preheader (the inbox preview line) instead of the template's."
    )
    sender_name: str | None = Field(
        None, min_length=1, max_length=100, description="From name instead of the shop's."
    )
    template: str | None = Field(None, description="Another template folder in email_templates/.")
    share: float | None = Field(
        None, gt=0, le=1, description="Split mode: this variant's share of the mails."
    )

    def text(self, part: str, language: str) -> str | None:
        """The variant's `subject` or `preheader` in `language` (None: the template's)."""
        value = getattr(self, part)
        if isinstance(value, dict):
            return value.get(language)
        return value


class AbTest(BaseModel):
    """`[ab_test]` of a campaign file: 2-5 variants and how to choose between them.

    `mode = "winner"` (mass and occasion campaigns): a random test group (`test_share` of the eligible,
    split evenly over the variants) gets the variants, the run waits `wait_hours` (a pause in the
    Prefect UI with live numbers; a marketer may pick the winner there), the best variant by `metric`
    wins when every variant has `min_per_variant` mails and the difference is significant at
    `confidence`, and everyone else gets the winner. `mode = "split"` (any campaign, also triggers
    and service mails): every mail goes to a variant by its `share` (default: equal), no winner.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["winner", "split"] = Field(
        "winner", description="winner: test group, wait, winner to the rest; split: every mail by `share`."
    )
    variants: tuple[TestVariant, ...] = Field(min_length=2, max_length=5)
    test_share: float = Field(
        0.2, gt=0, lt=1, description="Winner mode: share of the eligible in the test group."
    )
    wait_hours: float = Field(
        4.0, ge=0, le=168, description="Winner mode: how long the test group's mails run."
    )
    metric: WinnerMetric = Field(WinnerMetric.click_rate, description="What decides the winner.")
    min_per_variant: int = Field(
        200, ge=1, le=10_000_000, description="Mails each variant needs for a decision."
    )
    confidence: float = Field(0.95, ge=0.5, le=0.999, description="1 - the significance level of the test.")
    if_no_difference: Literal["leader", "first"] = Field(
        "leader",
        description="No significant winner (or too few mails): send the variant that measured best "
        "(leader) or the first variant (first, the control).",
    )
    refresh_minutes: float = Field(5.0, gt=0, le=60, description="How often the live numbers are refreshed.")

    @model_validator(mode="after")
    def _consistent(self) -> AbTest:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        shares = [v.share for v in self.variants]
        if self.mode == "winner" and any(s is not None for s in shares):
            raise ValueError("share is for split mode; the winner mode splits the test group evenly")
        given = any(s is not None for s in shares)
        if given and (any(s is None for s in shares) or abs(sum(s or 0 for s in shares) - 1) > 1e-6):
            raise ValueError(f"the variants' shares must all be given and add up to 1, got {shares}")
        return self

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def variant(self, name: str) -> TestVariant:
        return next(v for v in self.variants if v.name == name)

    @property
    def warnings(self) -> list[str]:
        """What a marketer should know about this test's choice of metric."""
        if self.metric == WinnerMetric.open_rate:
            return [
                "open rate decides this test: it counts people only (machine opens, e.g. Apple Mail "
                "Privacy Protection, are left out), so it measures the subject on the recipients whose "
                "opens can be seen at all; click rate or orders say more about what the mail did"
            ]
        return []


SERIES_EXITS = ("ordered", "cart_changed", "clicked", "unsubscribed", "other_series")
SeriesExit = Literal["ordered", "cart_changed", "clicked", "unsubscribed", "other_series"]
_CONDITION = r"^\s*[a-z_][a-z0-9_]*\s*(>=|<=|==|!=|>|<)\s*-?[0-9]+(\.[0-9]+)?\s*$"


class SeriesStep(BaseModel):
    """One mail of a series (`[[steps]]` in a campaign file): when it is due and what it sends.

    Due `delay_hours` after the customer entered the series (`after = "entry"`) or after the previous
    step was sent (`after = "previous"`); picked up by the first run or poll after that moment, and
    skipped (with the reason) when that run comes more than `max_age_hours` late."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", max_length=60, description="What the step is, in words (shown in the funnel).")
    delay_hours: float = Field(ge=0, le=24 * 365, description="Hours after entry (or the previous step).")
    after: Literal["entry", "previous"] = "entry"
    template: str | None = Field(None, description="Template folder; empty: the campaign's template.")
    max_age_hours: float = Field(
        24, gt=0, le=24 * 60, description="Skip the step when a run picks it up later than this."
    )
    values: dict[str, Any] = Field(
        default_factory=dict,
        description="Values the step's mail sees instead of the entry's, e.g. {days = 14}.",
    )
    conditions: tuple[str, ...] = Field(
        (),
        description="Send only when every condition holds over the entry's values, e.g. 'cart_total >= 1000' "
        "(else the step is skipped with the condition as the reason).",
    )

    @field_validator("conditions")
    @classmethod
    def _simple(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for condition in value:
            if not re.match(_CONDITION, condition):
                raise ValueError(f"condition {condition!r}: write 'column >= number' (ops > >= < <= == !=)")
        return value


class Campaign(BaseModel):
    """What a campaign file declares. Adding a campaign = one such file + one template folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$", description="The campaign's id: the file name.")
    title: str = Field(description='The campaign\'s name for people, e.g. "Новинки недели".')
    enabled: bool = Field(
        True,
        description="False: not scheduled, not run (SHOPMAIL_ENABLED_CAMPAIGNS / SHOPMAIL_DISABLED_CAMPAIGNS "
        "override it per shop).",
    )
    description: str = Field("", description="What it sends, in a sentence (shown in its deployment).")
    kind: CampaignKind = Field(description="service, trigger, occasion or mass.")
    audience: str = Field(description="Audience builder registered in `segments.audiences.registry`.")
    occasion_key: str = Field(description="Format string over audience columns, e.g. 'order:{order_id}'.")
    template: str = Field(description="Folder in email_templates/.")
    schedule: str | None = Field(None, description="Cron in the shop time zone.")
    priority: int = Field(50, ge=0, le=100, description="Who wins the frequency cap (higher first).")
    marketing: bool = Field(description="True: needs marketing consent, carries unsubscribe.")
    datasets: tuple[str, ...] = Field(("customers",), description="The shop datasets the campaign reads.")
    history_days: int = Field(365, ge=1, le=3650, description="How far back orders are read.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="`[params]`: passed to the audience builder."
    )
    polled: bool = Field(
        False,
        description="Service mail driven by the poller: sent for events since the last watermark.",
    )
    segment: str | None = Field(None, description="Default segment (config/segments.toml); mass runs.")
    coupon: CouponPolicy | None = Field(None, description="`[coupon]`: a personal coupon in every mail.")
    utm_campaign: str | None = Field(None, description="The links' utm_campaign tag; default: the name.")
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
    ab_test: AbTest | None = Field(
        None, description="An A/B test of subject, preheader, sender name or template."
    )
    steps: tuple[SeriesStep, ...] = Field(
        (),
        max_length=10,
        description="A series: its mails in order (each once per entry); none: one mail per occasion.",
    )
    entered_at: str | None = Field(
        None, description="Series: the audience column holding the moment the customer entered (naive UTC)."
    )
    exit_when: tuple[SeriesExit, ...] = Field(
        (),
        description="Series: what ends an entry before its next step (ordered since entry, cart_changed, "
        "clicked a mail of the series, unsubscribed, other_series = entered another series).",
    )
    send_time: Literal["fixed", "preferred"] = Field(
        "fixed",
        description="preferred: each mail is delivered (SendGrid send_at, at most 72 h ahead, never in the "
        "quiet hours) at the hour its customer reads mail, learned from their orders and clicks; fixed: when "
        "the run sends it.",
    )
    send_time_fixed_percent: float = Field(
        50,
        ge=0,
        le=100,
        description="With send_time = preferred: percent of customers (stable per customer) who keep the "
        "fixed hour, so `shopmail report` compares the two groups (variant 'fixed hour' / 'preferred hour').",
    )
    # set by the A/B test step on a copy of the campaign (never in a file): the variant this copy sends
    test_variant: TestVariant | None = Field(None, json_schema_extra={"internal": True})

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

    @model_validator(mode="after")
    def _winner_mode_kinds(self) -> Campaign:
        test = self.ab_test
        if test and test.mode == "winner" and (self.kind not in WINNER_KINDS or self.polled):
            raise ValueError(
                "ab_test: the winner mode (test group, wait, winner to the rest) is for mass and "
                'occasion campaigns; triggers and service mails run a continuous split: mode = "split"'
            )
        return self

    @model_validator(mode="after")
    def _series_consistent(self) -> Campaign:
        if self.steps:
            if not self.entered_at:
                raise ValueError("a series (steps) needs entered_at: the audience column of the entry moment")
            if self.steps[0].after == "previous":
                raise ValueError('the first step of a series counts from the entry: after = "entry"')
            if self.ab_test is not None:
                raise ValueError("a series has no A/B test (yet): remove [ab_test] or the steps")
        elif self.exit_when or self.entered_at:
            raise ValueError("exit_when and entered_at are for series: add [[steps]]")
        return self

    @model_validator(mode="after")
    def _send_time_marketing(self) -> Campaign:
        if self.send_time == "preferred" and (not self.marketing or self.ab_test is not None):
            raise ValueError(
                "send_time = preferred is for marketing mail without an A/B test (service mails go at "
                "once; the two groups of the send-time comparison take the place of the test's variants)"
            )
        return self

    @property
    def is_series(self) -> bool:
        return bool(self.steps)

    def step_label(self, number: int) -> str:
        """Step `number` (1-based) in words: "step 2 (1 day later)"."""
        step = self.steps[number - 1]
        return f"step {number}" + (f" ({step.name})" if step.name else "")

    def series_words(self) -> str:
        """The series' steps and schedule in words (deployment description, `shopmail campaigns`)."""
        if not self.steps:
            return ""
        exits = {
            "ordered": "the customer orders",
            "cart_changed": "the cart changes",
            "clicked": "a mail is clicked",
            "unsubscribed": "the customer unsubscribes",
            "other_series": "the customer enters another series",
        }
        parts = []
        for number, step in enumerate(self.steps, start=1):
            when = (
                "at entry"
                if not step.delay_hours
                else f"{_hours_words(step.delay_hours)} after "
                + ("the entry" if step.after == "entry" else "the previous step")
            )
            extra = f", only if {' and '.join(step.conditions)}" if step.conditions else ""
            label = f" ({step.name})" if step.name else ""
            parts.append(
                f"step {number}{label}: {when}{extra}, skipped when picked up more than "
                f"{_hours_words(step.max_age_hours)} late"
            )
        ends = ", ".join(exits[e] for e in self.exit_when)
        return (
            f"A series of {len(self.steps)} mails, one entry per occasion: "
            + "; ".join(parts)
            + "."
            + (f" It ends when {ends}." if ends else "")
            + " Each step goes out with the first run or poll after it falls due."
        )

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


def _hours_words(hours: float) -> str:
    """48 -> '2 days', 1 -> '1 hour', 1.5 -> '1.5 hours'."""
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


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
        if "test_variant" in data:
            raise ValueError("test_variant is set by the A/B test of a run, not in a file: use [ab_test]")
        campaign = Campaign(**data)
    except (tomllib.TOMLDecodeError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CampaignError(f"{path.name}: {_reason(exc)}") from exc
    if campaign.name != path.stem:
        raise CampaignError(f"{path.name}: name '{campaign.name}' must match the file name")
    problems = link_problems(campaign)
    if problems:
        raise CampaignError(f"{path.name}: {'; '.join(problems)}")
    if campaign.coupon is not None:  # the shop's coupon-code column must hold the codes (OpenCart: 20)
        from config.settings import get_settings
        from shopmail.coupon_codes import random_chars_for

        try:
            random_chars_for(campaign.coupon.prefix, get_settings().coupon_code_max_length)
        except ValueError as exc:
            raise CampaignError(f"{path.name}: coupon.prefix: {exc}") from exc
    return campaign


CARRIER_LINKS = (
    "tracking_url",
)  # params linking to another site (a carrier's); other `*url` params: shop pages


def link_problems(campaign: Campaign) -> list[str]:
    """The campaign's link parameters (`*url`, e.g. a sale's landing page, the carrier tracking link)
    that break the link rule (config/urls.py); shop pages must point at the shop's hosts."""
    from config.urls import url_problem

    settings = get_settings()
    problems = []
    for key, value in campaign.params.items():
        if not key.endswith("url") or not isinstance(value, str) or not value.strip():
            continue  # empty: the default (e.g. the shop's home page)
        hosts = () if key in CARRIER_LINKS else settings.shop_hosts
        link = value.replace("{tracking_number}", "0")
        if problem := url_problem(link, allow_http=settings.allow_http_links, hosts=hosts):
            problems.append(f"params.{key}: {value!r}: {problem}")
    return problems


class Registry(dict[str, Campaign]):
    """The valid campaigns by name; `broken` holds the files that did not load (name -> reason): a
    broken file disables only its own campaign."""

    def __init__(self, campaigns: dict[str, Campaign], broken: dict[str, str]) -> None:
        super().__init__(campaigns)
        self.broken = broken


def campaigns_folder() -> Path:
    """Where the campaign files are: SHOPMAIL_CAMPAIGNS_DIR, else `CAMPAIGNS_DIR` (config/campaigns/)."""
    return get_settings().campaigns_dir or CAMPAIGNS_DIR


def registry(folder: Path | None = None) -> Registry:
    """Every valid campaign file in `folder` (default: `campaigns_folder()`, as the settings say now),
    by name (broken ones in `.broken`); loaded once per folder (`registry.cache_clear()` reloads)."""
    return _registry(folder or campaigns_folder())


@lru_cache(maxsize=8)
def _registry(folder: Path) -> Registry:
    campaigns: dict[str, Campaign] = {}
    broken: dict[str, str] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            campaigns[path.stem] = load_campaign(path)
        except CampaignError as exc:
            broken[path.stem] = str(exc)
    return Registry(campaigns, broken)


registry.cache_clear = _registry.cache_clear  # type: ignore[attr-defined]


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
