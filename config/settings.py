"""Typed settings from `SHOPMAIL_*` environment variables or a `.env` file."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.addresses import address_problem, sendable_address
from config.quiet_hours import QuietHours
from config.secrets import SECRET_FIELDS, load_secret_blocks
from config.shop_profile import DEMO_PROFILE, DEMO_SHOP_NAME, demo_profile_fields
from config.urls import shop_hosts, url_problem

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / ".shopmail"
DEMO_SHOP_FILE = "demo_shop.sqlite"  # the embedded demo shop, in data_dir

# Shipped demo values: fine for the demo and the local providers, refused where mail or links reach
# real people (see `require_production_settings`). The defaults use RFC 2606 reserved names.
DEMO_UNSUBSCRIBE_SECRET = "dev-only-change-me"
DEMO_COUPON_SECRET = "dev-only-change-me-coupons"
DEFAULT_SENDER_EMAIL = "shop@shop.example"
NEW_SECRET_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
DEFAULT_POLL_CRON = "*/5 * * * *"  # the service poller: every 5 minutes


class MailProvider(StrEnum):
    """Where mail goes."""

    outbox = "outbox"
    sendgrid = "sendgrid"
    memory = "memory"


class TaskRunnerKind(StrEnum):
    """How a run executes its batch tasks."""

    threads = "threads"
    processes = "processes"
    dask = "dask"


class Settings(BaseSettings):
    """Everything Shopmail needs to know about the shop and where to send."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPMAIL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Local working folder (demo DBs, outbox).")
    shop_db_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL of the shop database; default: the demo SQLite shop."
    )
    state_db_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL of Shopmail's own state DB; default: SQLite in data_dir."
    )
    mail_provider: MailProvider = Field(MailProvider.outbox, description="outbox, sendgrid or memory.")
    templates_dir: Path = Field(
        PROJECT_ROOT / "email_templates", description="Jinja2 templates (a shop may keep its own copy)."
    )
    campaigns_dir: Path | None = Field(
        None, description="Campaign files (*.toml); default config/campaigns/ (a shop may keep its own copy)."
    )
    outbox_dir: Path | None = Field(None, description="Folder for .eml files; default data_dir/outbox.")
    sendgrid_api_key: SecretStr | None = Field(None, description="SendGrid API key (a secret).")
    sendgrid_host: str = Field(
        "https://api.sendgrid.com", description="SendGrid API host; a local sink in dev and tests."
    )
    sendgrid_timeout_s: float = Field(30.0, gt=0, le=300)
    sendgrid_retries: int = Field(5, ge=0, le=20, description="Retries per request on 429/5xx/timeouts.")
    sendgrid_backoff_s: float = Field(0.5, ge=0, le=60, description="First backoff wait (doubles).")
    sendgrid_max_rate_limit_wait_s: float = Field(60.0, ge=0, le=3600, description="Longest 429 wait.")
    sendgrid_concurrency: int = Field(8, ge=1, le=64, description="Parallel requests per send task.")
    sendgrid_rate_per_s: float | None = Field(
        None, gt=0, le=10_000, description="Cap on requests per second (None: no cap)."
    )
    sendgrid_activity_lookup: bool = Field(
        True, description="Ask the Email Activity API about in-doubt mails before resending them."
    )
    sendgrid_activity_budget_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Longest time one batch spends on Email Activity lookups of doubtful mails (6 a "
        "minute, 100 mails each); the rest wait for webhook proof or the next run.",
    )
    max_send_errors: int = Field(
        50, ge=0, description="Failed requests (after retries) a run tolerates before it pauses."
    )
    claim_lease_seconds: float = Field(
        120.0,
        ge=5,
        le=3600,
        description="Lease of a send attempt's claimed (pending) ledger rows, renewed every third of it "
        "while it sends; the rows of an attempt silent this long are taken over (never requested: at "
        "once; requested: as in doubt), and a run silent this long is closed and finished by the "
        "recovery step.",
    )
    recovery_cron: str = Field(
        "*/2 * * * *",
        description="When the recovery step runs (cron, shop time zone): it closes runs whose process "
        "died and finishes the mails they left open.",
    )
    doubt_grace_minutes: float = Field(
        30.0,
        ge=0,
        le=7 * 24 * 60,
        description="How long a SendGrid mail in doubt (its request got no answer, or its run died "
        "mid-send) waits for proof of acceptance (a webhook event, the Activity API) before a later run "
        "resends it once. Set it above the webhook's usual delay.",
    )
    task_runner: TaskRunnerKind = Field(
        TaskRunnerKind.threads,
        description="threads: one process; processes: render and send batches on every core; dask: "
        "on a Dask cluster (SHOPMAIL_DASK_ADDRESS, or a local one of `workers` processes).",
    )
    workers: int = Field(
        2, ge=1, le=64, description="Processes for task_runner=processes, or of dask's local cluster."
    )
    send_threads: int = Field(
        8,
        ge=1,
        le=64,
        description="Send batches at once with task_runner=threads (each holds its 1,000 mails and a "
        "database connection; more gives little on 2 cores and bounds what a crash leaves in doubt).",
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler of an existing Dask cluster for task_runner=dask (e.g. "
        "tcp://10.0.0.5:8786); empty: a local cluster of `workers` processes started per run. Its "
        "workers need the project installed and the same SHOPMAIL_* settings, and the state and shop "
        "DBs on a server they reach (no SQLite).",
    )
    send_batch_size: int = Field(1000, ge=1, le=1000, description="Recipients per send task.")
    preflight_sample: int = Field(
        200,
        ge=0,
        le=100_000,
        description="Recipients rendered before any mail goes out, beyond one per variant and language "
        "(catches template branches that only some recipients' data reach; 0: one per group only).",
    )
    approval_factor: float = Field(
        3.0, gt=1, le=100, description="Pause a mass/occasion send for approval above this x the median."
    )
    approval_min_audience: int = Field(
        500, ge=0, description="Audiences below this never need approval (small days vary a lot)."
    )
    approval_max_audience: int | None = Field(
        None, ge=1, description="Always ask for approval above this many recipients."
    )
    approval_timeout_s: int = Field(
        3600, ge=10, le=7 * 86400, description="A paused send not approved in time ends with nothing sent."
    )
    poll_overlap_minutes: int = Field(
        10, ge=0, le=1440, description="Service poller re-reads this much before its watermark."
    )
    poll_first_lookback_minutes: int = Field(
        60, ge=1, le=7 * 1440, description="How far back the service poller looks on its first run."
    )
    poll_cron: str = Field(
        DEFAULT_POLL_CRON,
        description="When the service poller runs: cron in the shop time zone, for `shopmail serve` and "
        "the generated prefect.yaml (a shorter or longer interval trades mail latency for load).",
    )
    serve_only: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Deployments `shopmail serve` serves, comma-separated (e.g. 'service-poller' to run "
        "the service mails on their own machine); empty: every deployment.",
    )
    frequency_cap: int = Field(
        3, ge=0, le=1000, description="Marketing mails per customer per frequency window (0: no cap)."
    )
    frequency_window_days: int = Field(7, ge=1, le=90, description="Days of the frequency-cap window.")
    daily_cap: int = Field(
        1,
        ge=0,
        le=100,
        description="Marketing mails per customer per shop-local day, counting only campaigns of equal "
        "or higher priority (0: no daily cap).",
    )
    quiet_hours: str = Field(
        "21-9",
        description="Customer-local hours without marketing mail, 'start-end' (e.g. '21-9', '22:30-8'); "
        "mails composed then are scheduled (send_at) for the end; '' or 'off': none.",
    )

    # The shop profile (config/shop_profile.py): what a customer sees; demo values refused for real sends.
    sender_email: str = Field(DEFAULT_SENDER_EMAIL, description="From address (refused by SendGrid runs).")
    sender_name: str = Field(DEMO_SHOP_NAME, description="From name.")
    reply_to: str | None = Field(
        None, description="Reply-To address of every mail; empty: support_email (replies reach a person)."
    )
    shop_name: str = Field(DEMO_SHOP_NAME, description="Shop name shown in mails (nominative case).")
    shop_name_genitive: str | None = Field(
        str(DEMO_PROFILE["shop_name_genitive"]),
        description="The shop name in the genitive case, for Russian templates ('от Ромашки'); "
        "empty: shop_name.",
    )
    shop_name_prepositional: str | None = Field(
        str(DEMO_PROFILE["shop_name_prepositional"]),
        description="The shop name in the prepositional case, for Russian templates ('в Ромашке'); "
        "empty: shop_name.",
    )
    shop_url: str = Field("https://shop.example", description="Shop home page.")
    support_email: str = Field(str(DEMO_PROFILE["support_email"]), description="Support address in mails.")
    support_phone: str = Field(str(DEMO_PROFILE["support_phone"]), description="Support phone in mails.")
    social_links: dict[str, str] = Field(
        default_factory=lambda: dict(DEMO_PROFILE["social_links"]),  # type: ignore[arg-type]
        description="Social links in every mail's footer, name -> URL (JSON in the env var; '{}': none).",
    )
    legal_footer: str = Field(
        str(DEMO_PROFILE["legal_footer"]),
        description="The shop's legal name and postal address, in every mail's footer (bulk-mail rules "
        "expect it).",
    )
    locale: str = Field("ru_RU", description="The shop's locale (money and date formats), e.g. ru_RU, en_US.")
    brand_color: str = Field(
        "#c2255c", pattern=r"^#[0-9a-fA-F]{6}$", description="Brand colour: header, buttons, links."
    )
    brand_text_color: str = Field(
        "#ffffff", pattern=r"^#[0-9a-fA-F]{6}$", description="Text colour on the brand colour (buttons)."
    )
    logo_url: str = Field("", description="Logo image (https URL) in the mail header; empty: the shop name.")
    logo_width: int = Field(160, ge=16, le=600, description="Logo width in px as shown in mails.")
    logo_height: int = Field(40, ge=8, le=300, description="Logo height in px as shown in mails.")
    timezone: str = Field("Europe/Moscow", description="Shop time zone (IANA name).")
    default_language: str = Field("ru", description="Language for customers without one.")

    utm_source: str = Field("shopmail", description="utm_source tag of every link in a mail.")
    utm_medium: str = Field("email", description="utm_medium tag of every link in a mail.")

    unsubscribe_url: str = Field(
        "https://shop.example/unsubscribe", description="Public one-click unsubscribe endpoint."
    )
    unsubscribe_mailbox: str = Field(
        str(DEMO_PROFILE["unsubscribe_mailbox"]),
        description="Address of RFC 2369 mailto: unsubscribes in List-Unsubscribe (its domain's MX at "
        "SendGrid Inbound Parse, posting to the feedback app's /sendgrid/inbound); empty: https link only.",
    )
    unsubscribe_secret: SecretStr = Field(
        SecretStr(DEMO_UNSUBSCRIBE_SECRET), description="HMAC key for unsubscribe tokens (a secret)."
    )
    feedback_base_url: str | None = Field(
        None,
        description="Public base URL of the feedback app (unsubscribe, webhook, mail previews), e.g. "
        "'https://mail.shop.example'; default: the origin of unsubscribe_url.",
    )
    preview_link_days: float = Field(
        7, gt=0, le=90, description="How long a signed link to a sample mail's HTML (artifacts) stays valid."
    )
    coupon_secret: SecretStr = Field(
        SecretStr(DEMO_COUPON_SECRET),
        description="HMAC key that makes personal coupon codes unguessable (a secret; changing it "
        "changes the codes of mails not yet sent).",
    )
    coupon_table: str = Field(
        "coupons",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="Where issued coupons go in the shop DB: 'coupons' (the contract table, writable) or "
        "a table Shopmail owns, e.g. 'shopmail_coupon_outbox', whose trigger (a platform kit's "
        "coupon_bridge.sql) creates the platform's own coupon.",
    )
    coupon_code_max_length: int | None = Field(
        None,
        ge=10,
        le=40,
        description="Longest coupon code the shop accepts (OpenCart: 20); the random part is shortened, "
        "the prefix kept; a campaign whose prefix cannot fit does not load. None: 40 (the contract).",
    )
    sendgrid_webhook_public_key: SecretStr | None = Field(
        None,
        description="SendGrid Event Webhook verification key (base64 DER, from the signed-webhook "
        "settings); without it the webhook endpoint rejects every request.",
    )

    secret_blocks: bool = Field(
        False, description="Read secrets missing from the environment from Prefect Secret blocks."
    )

    # The shop: money, links, campaigns it wants, how fresh its data must be (docs/connect/index.md).
    currency: str = Field(
        "RUB",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the shop's prices (orders with a `currency` column use their own).",
    )
    cart_path: str = Field("/cart", description="Cart page, relative to shop_url (or a full URL).")
    account_path: str = Field("/account", description="Customer account page (relative or full URL).")
    orders_path: str = Field("/account/orders", description="'My orders' page (relative or full URL).")
    product_path: str = Field(
        "/product/{id}", description="Product page for products without a `url` ({id}: the product id)."
    )
    tracking_url: str | None = Field(
        None,
        description="The shop's parcel tracking page with {tracking_number}, for orders without a carrier of "
        "tracking_urls (e.g. 'https://www.laposte.fr/outils/suivre-vos-envois?code={tracking_number}'); '' "
        "for no tracking link; unset: the campaign's tracking_url param (Russian Post), refused for a real "
        "send.",
    )
    tracking_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Carrier -> tracking URL template with {tracking_number}, for orders with a `carrier` "
        'column (JSON, e.g. {"cdek": "https://www.cdek.ru/track?order_id={tracking_number}"}); others use '
        "the campaign's tracking_url param.",
    )
    disabled_campaigns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Campaigns switched off for this shop, comma-separated (e.g. 'name_day,holiday').",
    )
    enabled_campaigns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Campaigns switched on although their file says enabled = false, comma-separated.",
    )
    max_order_age_days: int = Field(
        14,
        ge=0,
        le=3650,
        description="Data freshness: a newest order older than this stops the runs that read orders "
        "(a stale replica or a broken view; 0: no check).",
    )

    shop_lock_wait_s: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="How long a run waits in all for a shop database another program holds locked (SQLite "
        "busy, a PostgreSQL or MariaDB lock) before it stops; each wait is logged as a warning.",
    )
    allow_http_links: bool = Field(
        False,
        description="Allow http:// links in mails (shop pages, products, unsubscribe); off: https only, "
        "an http link in the settings refuses the run and a product with one is set aside.",
    )
    link_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts besides SHOPMAIL_SHOP_URL's that the shop's own links (product pages, shop "
        "pages) may point at, comma-separated (subdomains included), e.g. 'shop2.example,catalog.example'.",
    )
    order_currencies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="ISO 4217 codes orders may carry besides SHOPMAIL_CURRENCY, comma-separated (e.g. "
        "'USD,EUR'); an order in any other currency is set aside.",
    )

    @model_validator(mode="after")
    def _secrets_from_blocks(self) -> Settings:
        if not self.secret_blocks:
            return self
        missing = [f for f in SECRET_FIELDS if f not in self.model_fields_set]
        for field, value in load_secret_blocks(missing).items():
            object.__setattr__(self, field, SecretStr(str(value)))
        return self

    @model_validator(mode="after")
    def _remote_dask_needs_database_servers(self) -> Settings:
        """A remote Dask cluster's workers write the ledger (and coupons) from other machines: an
        SQLite file on this one is not theirs to reach (each would keep a ledger of its own)."""
        if self.task_runner != TaskRunnerKind.dask or not (self.dask_address or "").strip():
            return self
        local = [
            env_name(field)
            for field, url in (
                ("state_db_url", self.state_url_resolved),
                ("shop_db_url", self.shop_url_resolved),
            )
            if url.lower().startswith("sqlite")
        ]
        if local:  # reported against SHOPMAIL_DASK_ADDRESS, like a field's own error
            problem = PydanticCustomError(
                "dask_needs_database_servers",
                "a remote Dask cluster's workers send the mails and cannot share this machine's SQLite "
                "files: set {local} to a PostgreSQL or MariaDB database they reach (or leave "
                "SHOPMAIL_DASK_ADDRESS empty for a local cluster on this machine)",
                {"local": " and ".join(local)},
            )
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [InitErrorDetails(type=problem, loc=("dask_address",), input=self.dask_address)],
            )
        return self

    @field_validator("sender_email", "support_email")
    @classmethod
    def _mailable(cls, value: str) -> str:
        """The one address rule (config/addresses.py); a Unicode domain is kept in punycode."""
        problem = address_problem(value)
        if problem:
            raise ValueError(f"{value!r} is not an e-mail address that can be mailed: {problem}")
        return sendable_address(value)

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # Reply-To falls back to support_email
        return cls._mailable(value)

    @field_validator("order_currencies")
    @classmethod
    def _currency_codes(cls, value: list[str]) -> list[str]:
        codes = [code.upper() for code in value]
        odd = [code for code in codes if not code.isascii() or not code.isalpha() or len(code) != 3]
        if odd:
            raise ValueError(f"{', '.join(odd)}: not ISO 4217 codes (three letters, e.g. USD)")
        return codes

    @model_validator(mode="after")
    def _links_in_mails(self) -> Settings:
        """Every link a mail carries from the settings follows the link rule (config/urls.py); shop pages
        point at the shop's hosts. Each bad one is reported against its own setting."""
        problems = [
            (field, f"{url!r}: {problem}")
            for field, url, shop in self.mail_links()
            if (
                problem := url_problem(
                    url, allow_http=self.allow_http_links, hosts=self.shop_hosts if shop else ()
                )
            )
        ]
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("bad_link", "{problem}", {"problem": text}),
                        loc=(field,),
                        input="",
                    )
                    for field, text in problems
                ],
            )
        return self

    def mail_links(self) -> list[tuple[str, str, bool]]:
        """(setting, link, is a shop page) of every link the settings put into mails."""
        links = [("shop_url", self.shop_url, True), ("unsubscribe_url", self.unsubscribe_url, False)]
        shop_ok = url_problem(self.shop_url, allow_http=self.allow_http_links) is None
        for field in ("cart_path", "account_path", "orders_path", "product_path"):
            path = getattr(self, field)
            if shop_ok or path.startswith(("http://", "https://")):  # a relative path is the shop URL's
                links.append((field, self.shop_link(path).replace("{id}", "1"), True))
        if (self.feedback_base_url or "").strip():
            links.append(("feedback_base_url", self.feedback_base_url.strip(), False))
        if (self.logo_url or "").strip():
            links.append(("logo_url", self.logo_url.strip(), False))
        links += [("social_links", url, False) for url in self.social_links.values()]
        links += [
            ("tracking_urls", url.replace("{tracking_number}", "0"), False)
            for url in self.tracking_urls.values()
        ]
        return links

    @property
    def shop_hosts(self) -> tuple[str, ...]:
        """The hosts the shop's own links may point at (config/urls.py `shop_hosts`)."""
        return shop_hosts(self.shop_url, self.link_hosts)

    @property
    def currencies(self) -> tuple[str, ...]:
        """The currencies orders may be in: SHOPMAIL_CURRENCY, then SHOPMAIL_ORDER_CURRENCIES."""
        return tuple(dict.fromkeys([self.currency, *self.order_currencies]))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @field_validator("poll_cron", "recovery_cron")
    @classmethod
    def _poll_cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime(2026, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"bad cron '{value}': {exc}") from exc
        return value

    @field_validator(
        "serve_only",
        "disabled_campaigns",
        "enabled_campaigns",
        "link_hosts",
        "order_currencies",
        mode="before",
    )
    @classmethod
    def _serve_only(cls, value: object) -> object:
        if isinstance(value, str):  # the env var: "service-poller,welcome"
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        QuietHours.parse(value)  # raises ValueError for a bad spec
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def shop_link(self, path: str) -> str:
        """A shop page: `path` relative to shop_url, or a full URL as it is."""
        if path.startswith(("http://", "https://")):
            return path
        return self.shop_url.rstrip("/") + "/" + path.lstrip("/")

    @property
    def product_url_template(self) -> str:
        """URL of a product without its own `url` ('{id}' to fill in)."""
        return self.shop_link(self.product_path)

    @property
    def coupon_target(self) -> str:
        """The table personal coupons are written into (SHOPMAIL_COUPON_TABLE when the setting exists)."""
        return str(getattr(self, "coupon_table", None) or "coupons")

    @property
    def shop_url_resolved(self) -> str:
        """Shop DB URL, falling back to the embedded demo shop."""
        if self.shop_db_url is not None:
            return self.shop_db_url.get_secret_value()
        return f"sqlite:///{self.data_dir / DEMO_SHOP_FILE}"

    @property
    def state_url_resolved(self) -> str:
        """State DB URL, falling back to SQLite in the data folder."""
        if self.state_db_url is not None:
            return self.state_db_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'state.sqlite'}"

    @property
    def feedback_base_url_resolved(self) -> str:
        """Where the feedback app is reachable: feedback_base_url, else unsubscribe_url's origin."""
        if self.feedback_base_url and self.feedback_base_url.strip():
            return self.feedback_base_url.strip().rstrip("/")
        parts = urlsplit(self.unsubscribe_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def reply_to_resolved(self) -> str | None:
        """Reply-To of every mail: reply_to, else support_email."""
        value = (self.reply_to or "").strip() or self.support_email.strip()
        return value or None

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; call `get_settings.cache_clear()` after env changes)."""
    return Settings()


class DemoSettingsError(ValueError):
    """A production use (SendGrid sending, the public feedback app) with a shipped demo value."""


_DEMO_SECRETS = {"unsubscribe_secret": DEMO_UNSUBSCRIBE_SECRET, "coupon_secret": DEMO_COUPON_SECRET}


def env_name(field: str) -> str:
    """The environment variable of a settings field, e.g. SHOPMAIL_COUPON_SECRET."""
    return "SHOPMAIL_" + field.upper()


def demo_values_in_use(settings: Settings, *, sender: bool = False, profile: bool = False) -> list[str]:
    """Settings fields still at a shipped demo value (or blank): the two HMAC secrets, with `sender` the
    From address, with `profile` every customer-visible value of the shop profile
    (config/shop_profile.py: `DEMO_PROFILE`)."""
    found = [
        field
        for field, demo in _DEMO_SECRETS.items()
        if getattr(settings, field).get_secret_value().strip() in {demo, ""}
    ]
    if (sender or profile) and settings.sender_email.strip().lower() in {DEFAULT_SENDER_EMAIL, ""}:
        found.append("sender_email")
    if profile:
        found += [field for field in demo_profile_fields(settings) if field not in found]
    return found


def _shown(value: object) -> str:
    """A setting's current value as a refusal shows it (short)."""
    text = "unset" if value is None else repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 70 else text[:67] + "..."


def demo_settings_message(purpose: str, fields: list[str], settings: Settings | None = None) -> str:
    """Why `purpose` refuses to start and how to set each field."""
    lines = [
        f"Refusing to start {purpose}: still at the shipped demo value: {', '.join(map(env_name, fields))}."
    ]
    secrets = [f for f in fields if f in _DEMO_SECRETS]
    if secrets:
        lines.append(
            "The demo secrets are public (they are in the source): anyone could forge unsubscribe links "
            "or coupon codes. Set each to a new random value, e.g."
        )
        lines += [f"  export {env_name(f)}=$({NEW_SECRET_COMMAND})" for f in secrets]
        blocks = ", ".join(f"'shopmail-{f.replace('_', '-')}'" for f in secrets)
        lines.append(
            f"or, when deployed, store them in Prefect Secret blocks {blocks} and set "
            "SHOPMAIL_SECRET_BLOCKS=true."
        )
    if "sender_email" in fields:
        lines.append(
            f"{env_name('sender_email')} is the placeholder {DEFAULT_SENDER_EMAIL}: "
            "set your shop's own From address (a domain authenticated in SendGrid)."
        )
    visible = [f for f in fields if f in DEMO_PROFILE and f != "sender_email"]
    if visible:
        lines.append(
            "Every customer would see these shipped demo values: set each to your shop's own "
            "(docs/connect/index.md; `shopmail check-shop` lists the whole shop profile):"
        )
        lines += [
            f"  {env_name(f)}" + (f" (now {_shown(getattr(settings, f))})" if settings is not None else "")
            for f in visible
        ]
    return "\n".join(lines)


def require_production_settings(
    settings: Settings, purpose: str, *, sender: bool = False, profile: bool = False
) -> None:
    """Raise `DemoSettingsError` if `purpose` would run with a demo secret (or, with `sender`, the
    placeholder From address; with `profile`, any customer-visible demo value). A real send (SendGrid,
    or any provider on a shop database that is not the demo shop: `is_real_send`) asks for all three;
    the demo on its own shop with the outbox/memory providers asks for none."""
    fields = demo_values_in_use(settings, sender=sender, profile=profile)
    if fields:
        raise DemoSettingsError(demo_settings_message(purpose, fields, settings))


def kit_demo_message(purpose: str, values: list[str]) -> str:
    """Why `purpose` refuses to start while a platform kit's settings hold its example shop."""
    return (
        f"Refusing to start {purpose}: the shop database's platform kit still links to the example shop "
        f"(https://shop.example/) in {', '.join(values)}: every product link and picture of a mail would "
        "point there. Set it to your storefront, e.g. "
        "UPDATE shopmail_kit_config SET value='https://<your shop>/' WHERE name='store_url'"
    )


def is_real_send(settings: Settings, demo_shop: bool) -> bool:
    """Mail that reaches real people: SendGrid itself (any host but this machine's local SendGrid
    server), or a shop database that is not the demo shop whatever the provider (the outbox of a real
    shop is read by someone who forwards or imports it). The demo shop sent to the local server (`make
    demo`, `shopmail demo`) reaches no one."""
    if settings.mail_provider == MailProvider.sendgrid and not on_this_machine(settings.sendgrid_host):
        return True
    return not demo_shop


def needs_demo_shop_check(settings: Settings) -> bool:
    """Whether `is_real_send` depends on the shop being the demo shop (else it is real regardless)."""
    return settings.mail_provider != MailProvider.sendgrid or on_this_machine(settings.sendgrid_host)


def on_this_machine(url: str) -> bool:
    """A URL whose host is a loopback address or `localhost` (the local SendGrid server)."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def real_send_purpose(settings: Settings) -> str:
    """How a real send is named in the refusal."""
    if settings.mail_provider == MailProvider.sendgrid:
        return "sending through SendGrid"
    return (
        f"sending ({settings.mail_provider.value} provider) to the customers of a shop database that is "
        "not the demo shop"
    )
