"""Errors for people: one paragraph per expected failure, saying what happened and what to do next.

`explain(exc)` maps an exception (a failed data check, a configuration mistake, a database that
cannot be reached, read or written, a table or column missing from the shop data contract) to an
`Explained` message and exit code; the CLI prints it instead of a traceback (`--debug` shows the
traceback; the Prefect logs of a run always have it). Project exceptions of higher rooms (flows,
tasks) are recognised by class name, so this module imports neither. Messages are redacted: no DB
password (URLs are shown with `safe_url`), token or coupon code.
"""

from __future__ import annotations

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
        "table or to the view that maps your shop (NULL where the shop has no value; see README "
        f'"The shop data contract"), or check SHOPMAIL_SHOP_DB_URL ({safe_url(ctx.shop_url) or "not set"}).',
        CONFIG_EXIT,
    )


def _database_error(exc: DBAPIError, ctx: Context) -> Explained:
    detail = first_line(exc)
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
}


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
