"""Typed settings from `SHOPMAIL_*` environment variables or a `.env` file."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.quiet_hours import QuietHours
from config.secrets import SECRET_FIELDS, load_secret_blocks

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / ".shopmail"


class MailProvider(StrEnum):
    """Where mail goes."""

    outbox = "outbox"
    sendgrid = "sendgrid"
    memory = "memory"


class TaskRunnerKind(StrEnum):
    """How a run executes its batch tasks."""

    threads = "threads"
    processes = "processes"


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
    max_send_errors: int = Field(
        50, ge=0, description="Failed requests (after retries) a run tolerates before it pauses."
    )
    task_runner: TaskRunnerKind = Field(
        TaskRunnerKind.threads,
        description="threads: one process; processes: render and send batches on every core.",
    )
    workers: int = Field(2, ge=1, le=64, description="Processes for task_runner=processes.")
    send_batch_size: int = Field(1000, ge=1, le=1000, description="Recipients per send task.")
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

    sender_email: str = Field("shop@example.ru", description="From address.")
    sender_name: str = Field("Демо-магазин", description="From name.")
    reply_to: str | None = None
    shop_name: str = Field("Демо-магазин", description="Shop name shown in mails.")
    shop_url: str = Field("https://shop.example.ru", description="Shop home page.")
    support_email: str = "support@example.ru"
    support_phone: str = "+7 800 000-00-00"
    social_links: dict[str, str] = Field(
        default_factory=lambda: {
            "ВКонтакте": "https://vk.com/shop.example",
            "Telegram": "https://t.me/shop_example",
        },
        description="Social links in every mail's footer, name -> URL (JSON in the env var).",
    )
    timezone: str = Field("Europe/Moscow", description="Shop time zone (IANA name).")
    default_language: str = Field("ru", description="Language for customers without one.")

    utm_source: str = "shopmail"
    utm_medium: str = "email"

    unsubscribe_url: str = Field(
        "https://shop.example.ru/unsubscribe", description="Public one-click unsubscribe endpoint."
    )
    unsubscribe_secret: SecretStr = Field(
        SecretStr("dev-only-change-me"), description="HMAC key for unsubscribe tokens (a secret)."
    )
    coupon_secret: SecretStr = Field(
        SecretStr("dev-only-change-me-coupons"),
        description="HMAC key that makes personal coupon codes unguessable (a secret; changing it "
        "changes the codes of mails not yet sent).",
    )
    sendgrid_webhook_public_key: SecretStr | None = Field(
        None,
        description="SendGrid Event Webhook verification key (base64 DER, from the signed-webhook "
        "settings); without it the webhook endpoint rejects every request.",
    )

    secret_blocks: bool = Field(
        False, description="Read secrets missing from the environment from Prefect Secret blocks."
    )

    @model_validator(mode="after")
    def _secrets_from_blocks(self) -> Settings:
        if not self.secret_blocks:
            return self
        missing = [f for f in SECRET_FIELDS if f not in self.model_fields_set]
        for field, value in load_secret_blocks(missing).items():
            object.__setattr__(self, field, SecretStr(str(value)))
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        QuietHours.parse(value)  # raises ValueError for a bad spec
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def shop_url_resolved(self) -> str:
        """Shop DB URL, falling back to the embedded demo shop."""
        if self.shop_db_url is not None:
            return self.shop_db_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'demo_shop.sqlite'}"

    @property
    def state_url_resolved(self) -> str:
        """State DB URL, falling back to SQLite in the data folder."""
        if self.state_db_url is not None:
            return self.state_db_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'state.sqlite'}"

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; call `get_settings.cache_clear()` after env changes)."""
    return Settings()
