"""Errors for people: one paragraph per expected failure, saying what happened and what to do next.

`explain(exc)` maps an exception (a failed data check, a configuration mistake, a database that
cannot be reached, read or written, a table or column missing from the shop data contract) to an
`Explained` message and exit code; the CLI prints it instead of a traceback (`--debug` shows the
traceback; the Prefect logs of a run always have it). Project exceptions of higher rooms (flows,
tasks) are recognised by class name, so this module imports neither. Messages are redacted: no DB
password (URLs are shown with `safe_url`), token or coupon code.
"""

from __future__ import annotations

import copy
import errno
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError

from shopmail.db import safe_url
from shopmail.redaction import redact
from shopmail.shop.schema import metadata as contract

CONFIG_EXIT = 2  # configuration: settings, campaign or segment files, URLs, missing tables
FAILED_EXIT = 1  # the run failed or was refused: data checks, templates, sending, database errors

MISSING_TABLE = (
    re.compile(r"no such table: (?:\w+\.)?(\w+)"),  # SQLite
    re.compile(r'relation "(?:\w+\.)?(\w+)" does not exist'),  # PostgreSQL
    re.compile(r"Table '(?:[^.']+\.)?(\w+)' doesn't exist"),  # MariaDB / MySQL
)
MISSING_COLUMN = (
    re.compile(r"no such column: ([\w.]+)"),
    re.compile(r"column ([\w.]+) does not exist"),
    re.compile(r"Unknown column '([\w.]+)'"),
)
NO_PERMISSION = re.compile(
    r"readonly database|read-only|permission denied|command denied|access denied for user .* to database",
    re.IGNORECASE,
)
NO_CONNECTION = re.compile(
    r"password authentication failed|access denied for user|could not connect|connection refused|"
    r"could not translate host name|name or service not known|timed? ?out|can't connect|"
    r"unable to open database file|server closed the connection|no route to host|"
    r"connection to server .* failed|unknown database|database .* does not exist",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Explained:
    """What to tell the user: one paragraph, and the exit code."""

    message: str
    exit_code: int = FAILED_EXIT


@dataclass(frozen=True)
class Context:
    """What the messages may name: the databases (shown without password) and the data folder."""

    shop_url: str = ""
    state_url: str = ""
    data_dir: str = ""


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def first_line(exc: BaseException) -> str:
    """The first non-empty line of the exception's message (of the driver's, for DB errors)."""
    source = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(source).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _databases(ctx: Context) -> str:
    parts = [f"shop DB {safe_url(ctx.shop_url)}" if ctx.shop_url else ""]
    parts.append(f"state DB {safe_url(ctx.state_url)}" if ctx.state_url else "")
    return "; ".join(p for p in parts if p)


def _contract_columns(table: str) -> str:
    columns = contract.tables[table].columns
    return ", ".join(f"{c.name} ({c.type.__class__.__name__.upper()})" for c in columns)


def _contract_error(exc: BaseException, ctx: Context) -> Explained:
    """A dataset or required column the data contract needs is absent (`shopmail.shop.contract`)."""
    datasets = getattr(exc, "datasets", None)
    if datasets:
        found = missing_table(datasets[0], ctx)
        others = f" (also missing: {', '.join(datasets[1:])})" if len(datasets) > 1 else ""
        return Explained(
            f"{found.message}{others} A shop without it can switch off the campaigns that need it "
            "(SHOPMAIL_DISABLED_CAMPAIGNS); `shopmail check-shop` lists what can run.",
            CONFIG_EXIT,
        )
    return Explained(f"Shop data contract: {first_line(exc)}.", CONFIG_EXIT)


def missing_table(table: str, ctx: Context) -> Explained:
    """A table or view the shop data contract (or the state DB) needs is absent."""
    if table in contract.tables:
        return Explained(
            f"The shop database has no table or view `{table}`. The shop data contract "
            f"(shopmail/shop/schema.py) expects `{table}` with the columns {_contract_columns(table)}. "
            f"Create a view named `{table}` over your shop's tables, or check that SHOPMAIL_SHOP_DB_URL "
            f"({safe_url(ctx.shop_url) or 'not set'}) points at the shop database; for the demo shop run "
            "`shopmail demo-data`.",
            CONFIG_EXIT,
        )
    return Explained(
        f"The state database has no table `{table}`: it is not Shopmail's state DB or it was not migrated. "
        f"Check SHOPMAIL_STATE_DB_URL ({safe_url(ctx.state_url) or 'not set'}); Shopmail migrates its own "
        "empty database on first use.",
        CONFIG_EXIT,
    )


def missing_column(name: str, ctx: Context) -> Explained:
    """A column of the contract is absent from the shop's table or view."""
    table, _, column = name.rpartition(".")
    expected = (
        f" The contract expects `{table}` with {_contract_columns(table)}."
        if table in contract.tables
        else ""
    )
    return Explained(
        f"The shop database's `{table or '?'}` has no column `{column}`.{expected} Add the column to the "
        "table or to the view that maps your shop (NULL where the shop has no value; see the data "
        "contract, docs/connect/data-contract.md), or check "
        f'SHOPMAIL_SHOP_DB_URL ({safe_url(ctx.shop_url) or "not set"}).',
        CONFIG_EXIT,
    )


def _database_error(exc: DBAPIError, ctx: Context) -> Explained:
    detail = first_line(exc)
    if "database or disk is full" in detail or "disk I/O error" in detail:
        return Explained(
            f"The database could not be written: {detail}. The disk holding it is full (or failing): free "
            "space there, or move the database (SHOPMAIL_STATE_DB_URL, or SHOPMAIL_DATA_DIR for the default "
            f"state DB; SHOPMAIL_SHOP_DB_URL) and run again; the send ledger sends only what is missing "
            f"({_databases(ctx)})."
        )
    for pattern in MISSING_TABLE:
        if match := pattern.search(detail):
            return missing_table(match.group(1), ctx)
    for pattern in MISSING_COLUMN:
        if match := pattern.search(detail):
            return missing_column(match.group(1), ctx)
    if "database is locked" in detail:
        return Explained(
            f"The SQLite database is busy: {detail}. Another Shopmail process is writing it; wait until it "
            f"has finished and run again (use PostgreSQL for concurrent runs) ({_databases(ctx)}).",
        )
    if NO_PERMISSION.search(detail):
        return Explained(
            f"The database refused a change: {detail}. Shopmail writes its state DB (send ledger, runs) and "
            "inserts personal coupons into the shop's `coupons` table: give the database user those rights "
            "(e.g. GRANT INSERT ON coupons TO <user>) or make the SQLite file and its folder writable "
            f"({_databases(ctx)}).",
        )
    if NO_CONNECTION.search(detail):
        return Explained(
            f"Cannot connect to a database: {detail}. Check that the server is running and reachable from "
            "here, and the host, database name, user and password in SHOPMAIL_SHOP_DB_URL / "
            f"SHOPMAIL_STATE_DB_URL ({_databases(ctx)}).",
        )
    return Explained(f"The database reported an error: {detail} ({_databases(ctx)}).")


def _settings_error(exc: ValidationError) -> Explained:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in error["loc"])
        name = f"SHOPMAIL_{field.upper()}" if exc.title == "Settings" and field else field or "value"
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    where = "in the environment or in .env" if exc.title == "Settings" else f"({exc.title})"
    return Explained(
        f"Configuration error: {'; '.join(problems)}. Fix it {where} and run again.", CONFIG_EXIT
    )


PROJECT_ERRORS: dict[str, Callable[[BaseException, Context], Explained]] = {
    "DataCheckFailed": lambda e, _: Explained(
        f"{first_line(e)}. Fix these rows in the shop database (or the views that map it), then run again; "
        "the table of every check is in the run's Prefect artifacts, and `shopmail history` shows the run."
    ),
    "TemplateCheckFailed": lambda e, _: Explained(
        f"{first_line(e)}. Fix the template in email_templates/ (`shopmail preview CAMPAIGN --customer ID` "
        "shows one mail), then run again."
    ),
    "RenderFailed": lambda e, _: Explained(first_line(e)),
    "SendNotApproved": lambda e, _: Explained(
        f"{first_line(e)}. Approve the paused run in the Prefect UI, or run again with --yes to approve this "
        "audience in advance."
    ),
    "SendingPaused": lambda e, _: Explained(
        f"{first_line(e)}. Check the mail provider (SendGrid status, API key, rate limits), then run again: "
        "the send ledger sends only what is missing."
    ),
    "CampaignError": lambda e, _: Explained(f"Campaign configuration: {first_line(e)}.", CONFIG_EXIT),
    "SegmentError": lambda e, _: Explained(
        f"Segment configuration: {first_line(e)}. See `shopmail segment --list` and config/segments.toml.",
        CONFIG_EXIT,
    ),
    "DemoSettingsError": lambda e, _: Explained(str(e), CONFIG_EXIT),
    "DatasetUnreadable": lambda e, _: Explained(_capitalized(first_line(e)) + ".", CONFIG_EXIT),
    "ContractError": lambda e, ctx: _contract_error(e, ctx),
    "ShopDatabaseMissing": lambda e, ctx: Explained(
        f"{first_line(e).capitalize()}. For the demo shop run `shopmail demo-data`; for your shop set "
        "SHOPMAIL_SHOP_DB_URL to its database (e.g. postgresql+psycopg://user:password@host/shop).",
        CONFIG_EXIT,
    ),
    "TemplateError": lambda e, _: Explained(f"Template error: {first_line(e)}. Fix it in email_templates/."),
    "ZoneInfoNotFoundError": lambda e, _: Explained(
        f"Configuration error: {first_line(e).strip(chr(39))}. Set SHOPMAIL_TIMEZONE (environment or .env) "
        "to an IANA time zone name such as Europe/Moscow or Asia/Yekaterinburg.",
        CONFIG_EXIT,
    ),
    "ParameterTypeError": lambda e, _: Explained(f"Invalid run parameter: {first_line(e)}.", CONFIG_EXIT),
    "BatchesFailed": lambda e, ctx: _batches_failed(e, ctx),
    "StopRequested": lambda e, _: Explained(
        f"Run {first_line(e)}. `shopmail history` shows it as interrupted.", getattr(e, "exit_code", 1)
    ),
    "CancelledRun": lambda e, ctx: _cancelled_run(e, ctx),
    "FailedRun": lambda e, ctx: _failed_run(e, ctx),
    "DatabaseFileReplaced": lambda e, _: Explained(
        f"{first_line(e)}: the run stopped, so that nothing more is written into a file that is gone. "
        "Restore the shop database (SHOPMAIL_SHOP_DB_URL) and run again: the send ledger sends only what "
        "is missing, and coupons already mailed are inserted again where the shop lacks them."
    ),
    "ShopDatabaseLocked": lambda e, _: Explained(
        f"{first_line(e)}. Another program holds a lock on it (a backup, an import, the shop itself in a "
        "long transaction): run again when it is done, or raise SHOPMAIL_SHOP_LOCK_WAIT_S."
    ),
}


def _batches_failed(exc: BaseException, ctx: Context) -> Explained:
    """Send batches failed as a whole: the first one's cause in words where it is known (a deleted shop
    file, a locked database), and what happens to their mails."""
    after = (
        "Nothing is lost or sent twice: their mails stay open in the send ledger, and the recovery step "
        "(or a rerun of this command) sends them exactly once."
    )
    cause = exc.__cause__
    known = explain(cause, ctx) if cause is not None else None
    if known is not None:
        return Explained(f"{first_line(exc).split(' (')[0]}: {known.message} {after}", known.exit_code)
    return Explained(f"{first_line(exc)}. {after}")


def explain(exc: BaseException, ctx: Context | None = None) -> Explained | None:
    """The paragraph for an expected failure (redacted), or None for an unexpected one."""
    ctx = ctx or Context()
    for cause in _chain(exc):  # e.g. pandas wraps the driver's error in its own DatabaseError
        explained = _explain(cause, ctx)
        if explained is not None:
            return Explained(redact(explained.message), explained.exit_code)
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from (or while handling), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


STORAGE_PROBLEMS = {
    errno.EROFS: ("is read-only", "make it writable"),
    errno.ENOSPC: ("is full", "free space there"),
    errno.EDQUOT: ("is over its quota", "free space there"),
}


def _storage_error(exc: OSError, ctx: Context) -> Explained | None:
    """A file system that is read-only or full: which path, which setting."""
    problem = STORAGE_PROBLEMS.get(exc.errno or 0)
    if problem is None:
        return None
    path = str(exc.filename or "")
    state_file = ctx.state_url.removeprefix("sqlite:///") if ctx.state_url.startswith("sqlite:///") else ""
    in_data_dir = bool(ctx.data_dir) and path.startswith(ctx.data_dir.rstrip("/") + "/")
    if state_file and path.startswith(state_file) and not in_data_dir:
        setting = f"SHOPMAIL_STATE_DB_URL (the state DB, {safe_url(ctx.state_url)})"
    elif in_data_dir:
        setting = f"SHOPMAIL_DATA_DIR ({ctx.data_dir}: state DB, outbox, demo shop)"
    else:
        setting = "SHOPMAIL_DATA_DIR, SHOPMAIL_STATE_DB_URL or SHOPMAIL_OUTBOX_DIR (whichever names it)"
    what, fix = problem
    return Explained(
        f"Cannot write {path or 'a file'}: the file system there {what}. {fix.capitalize()}, or point "
        f"{setting} at a writable place, then run again (the send ledger sends only what is missing)."
    )


def _failed_run(exc: BaseException, _ctx: Context) -> Explained | None:
    """Prefect's own failures of a run: an approval pause that timed out ends "never resumed"."""
    if "never resumed" in str(exc):
        return Explained(
            "Send not approved, nothing sent: the run waited for approval in the Prefect UI and nobody "
            "answered within SHOPMAIL_APPROVAL_TIMEOUT_S. Approve the paused run in time, or run again "
            "with --yes to approve this audience in advance."
        )
    return None


def _cancelled_run(exc: BaseException, _ctx: Context) -> Explained:
    """A run that ended Cancelled: a rejected approval (its message says why), or cancelled by a person."""
    text = first_line(exc)
    if "not approved" in text:
        return PROJECT_ERRORS["SendNotApproved"](exc, _ctx)
    return Explained(f"The run was cancelled: {text}. Nothing more was sent; run again to resume.")


def _explain(exc: BaseException, ctx: Context) -> Explained | None:
    names = _names(exc)
    for name, handler in PROJECT_ERRORS.items():
        if name in names:
            return handler(exc, ctx)
    if isinstance(exc, ValidationError):
        return _settings_error(exc)
    if isinstance(exc, NoSuchTableError):
        return missing_table(str(exc), ctx)
    if isinstance(exc, DBAPIError):
        return _database_error(exc, ctx)
    if isinstance(exc, SQLAlchemyError):
        return Explained(f"Database error: {first_line(exc)} ({_databases(ctx)}).")
    if isinstance(exc, OSError) and (storage := _storage_error(exc, ctx)) is not None:
        return storage
    if isinstance(exc, PermissionError):
        return Explained(
            f"Permission denied: {exc.filename or first_line(exc)}. Shopmail reads and writes its data "
            f"folder ({ctx.data_dir or 'SHOPMAIL_DATA_DIR'}): fix the owner or permissions, or point "
            "SHOPMAIL_DATA_DIR at a folder this user may write."
        )
    return None


def unexpected(exc: BaseException) -> str:
    """The short line for an exception `explain` does not know (redacted)."""
    return redact(
        f"Unexpected error: {type(exc).__name__}: {first_line(exc)}. Run again with --debug (or "
        "SHOPMAIL_DEBUG=1) for the full traceback; a flow run's Prefect logs always have it."
    )


class WithoutUserTracebacks(logging.Formatter):
    """A console formatter that prints a record carrying an expected failure (one `explain` knows: the
    user can fix it) without its traceback; other records as `inner` formats them."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and explain(exc) is not None:
            record = copy.copy(record)  # other handlers (the run's API log) keep the traceback
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return self.inner.format(record)


def console_without_user_tracebacks(root: logging.Logger | None = None) -> None:
    """Prefect's console handlers (on the root logger) print expected failures as one line, without
    the traceback above the CLI's own paragraph; the run's logs in Prefect keep it."""
    for handler in (root or logging.getLogger()).handlers:
        if type(handler).__name__ == "PrefectConsoleHandler" and not isinstance(
            handler.formatter, WithoutUserTracebacks
        ):
            handler.setFormatter(WithoutUserTracebacks(handler.formatter))
