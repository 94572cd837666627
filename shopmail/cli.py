"""The `shopmail` command line."""

from __future__ import annotations

import os
import traceback
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry job, no "database locked"

import click  # noqa: E402
import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from config.quiet_logs import use_logging_config  # noqa: E402

use_logging_config()  # before Prefect is imported: the logging of `serve` and the work pools' runs

from config.settings import (  # noqa: E402
    DEMO_SHOP_FILE,
    DemoSettingsError,
    Settings,
    get_settings,
    is_real_send,
    needs_demo_shop_check,
    real_send_purpose,
    require_production_settings,
)
from shopmail.db import private_dir, safe_url  # noqa: E402
from shopmail.redaction import install_log_redaction, redact  # noqa: E402

# Heavy modules (Prefect, Great Expectations, pandas, SQLAlchemy, the flows) are imported inside the
# commands that use them: `shopmail --help`, `campaigns` and `history` start in well under a second
# (tests/test_cli_startup.py).


class CliFailure(SystemExit):
    """Exit with `code` after printing `message`; `str()` is the message (for tests and callers)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _error_context():
    from shopmail.run.errors import Context

    try:
        settings = get_settings()
    except Exception:  # the settings themselves are the problem: say so without them
        return Context()
    return Context(settings.shop_url_resolved, settings.state_url_resolved, str(settings.data_dir))


def debug_wanted(ctx: click.Context) -> bool:
    """`--debug` or SHOPMAIL_DEBUG=1: show full tracebacks."""
    flag = os.environ.get("SHOPMAIL_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    return flag or bool(ctx.params.get("debug"))


def fail(exc: BaseException, debug: bool) -> CliFailure:
    """Print one paragraph for `exc` (and the traceback when `debug`); the exit to raise."""
    from shopmail.run.errors import explain, unexpected

    explained = explain(exc, _error_context())
    message = explained.message if explained else unexpected(exc)
    if debug:
        typer.echo(redact("".join(traceback.format_exception(exc))), err=True)
    typer.echo(message, err=True)
    return CliFailure(message, explained.exit_code if explained else 1)


_debug_flag = [False]  # --debug, as the group's callback saw it


def quiet_user_errors() -> None:
    """After Prefect set up its logging: its console prints an expected failure as its line only (the
    paragraph below says what to do); `--debug` keeps the tracebacks."""
    ctx = click.get_current_context(silent=True)
    debug = debug_wanted(ctx.find_root()) if ctx is not None else _debug_flag[0]
    if not debug and os.environ.get("SHOPMAIL_DEBUG", "").strip().lower() not in {"1", "true", "yes", "on"}:
        from shopmail.run.errors import console_without_user_tracebacks

        console_without_user_tracebacks()


class FriendlyGroup(TyperGroup):
    """Every command's expected failures as one paragraph with what to do next, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, typer.Exit):
            raise  # typer.Exit is not click's Exit (a RuntimeError): a command's own exit code
        except Exception as exc:
            raise fail(exc, debug_wanted(ctx)) from exc


app = typer.Typer(
    help="Shopmail: email marketing automation for online shops.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    cls=FriendlyGroup,
)
console = Console()
PIPED_WIDTH = 4096  # output width when stdout is not a terminal: a script reads whole names


class OutputFormat(StrEnum):
    """How `campaigns`, `check-shop` and `history` print: tables for people, JSON for scripts."""

    table = "table"
    json = "json"


FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table (for people) or json (for scripts).")
]


def _print_json(value: Any) -> None:
    """`value` as JSON on stdout (plain, never wrapped or cut)."""
    import json

    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@app.callback()
def _prepare(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of a failure (or SHOPMAIL_DEBUG=1).")
    ] = False,
) -> None:
    """Create the local data folder (demo shop, state DB, outbox) if needed. Without a Prefect
    server (PREFECT_API_URL), runs use a temporary one whose database lives in the data folder."""
    _debug_flag[0] = debug
    if not console.is_terminal:  # piped or captured: never cut names at 80 columns
        console.width = PIPED_WIDTH
    settings = get_settings()
    install_log_redaction(settings)  # no coupon code, token or secret in what the CLI prints
    data_dir = settings.data_dir
    private_dir(data_dir)  # demo shop, state DB, outbox: personal data, owner only
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = str(data_dir.resolve() / "prefect")


AsOf = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="Day to run for (shop time zone)."),
]


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def _refuse_demo_settings(
    settings: Settings, purpose: str, *, sender: bool = False, profile: bool = False
) -> None:
    """Exit with the reason and the fix when `purpose` would start with a shipped demo value."""
    try:
        require_production_settings(settings, purpose, sender=sender, profile=profile)
    except DemoSettingsError as exc:
        typer.echo(str(exc), err=True)  # plain: the export lines must stay copyable
        raise typer.Exit(2) from None


def is_demo_shop_url(url: str, data_dir: Path) -> bool:
    """True if `url` is the embedded demo shop's own SQLite file in `data_dir` (what `demo-data`
    may drop and recreate without --force)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # unparseable: certainly not ours
        return False
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return False
    return Path(parsed.database).resolve() == (data_dir / DEMO_SHOP_FILE).resolve()


def _refuse_demo_sending(settings: Settings, dry_run: bool) -> None:
    """A real send (SendGrid, or any provider on a shop database that is not the demo shop) reaches
    real people: refuse the demo secrets, the From address and every customer-visible demo value of
    the shop profile before any work. A dry run sends nothing and is allowed."""
    if dry_run:
        return
    if is_real_send(settings, needs_demo_shop_check(settings) and _demo_shop(settings)):
        _refuse_demo_settings(settings, real_send_purpose(settings), sender=True, profile=True)
        from config.settings import kit_demo_message
        from shopmail.db import kit_demo_values

        if kit := kit_demo_values(settings.shop_url_resolved):
            typer.echo(kit_demo_message(real_send_purpose(settings), kit), err=True)
            raise typer.Exit(2)


def _demo_shop(settings: Settings) -> bool:
    from shopmail.db import is_demo_shop

    return is_demo_shop(settings.shop_url_resolved, settings.data_dir)


@app.command("demo-data")
def demo_data(
    customers: Annotated[int, typer.Option(min=10, help="How many customers.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same shop).")] = 42,
    today: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="The shop's 'today' (default: today; before 06:00 shop time: yesterday).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also overwrite a SHOPMAIL_SHOP_DB_URL other than the demo's own file."),
    ] = False,
) -> None:
    """Generate the demo shop database (the embedded default, or SHOPMAIL_SHOP_DB_URL with --force)."""
    from shopmail.devtools.demo_shop import generate_demo_shop, latest_demo_day

    settings = get_settings()
    url = settings.shop_url_resolved
    if not force and not is_demo_shop_url(url, settings.data_dir):
        typer.echo(
            f"Refusing to overwrite {safe_url(url)}: `demo-data` drops and recreates the shop tables "
            "(customers, orders, coupons, ...) and this is not the demo shop's own file "
            f"({settings.data_dir / DEMO_SHOP_FILE}). Unset SHOPMAIL_SHOP_DB_URL for the demo, or pass "
            "--force if this database is a scratch copy you mean to overwrite.",
            err=True,
        )
        raise typer.Exit(2)
    console.print(f"Demo shop -> {safe_url(url)}")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bars: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done, total=total)

        day = _day(today) or latest_demo_day()
        counts = generate_demo_shop(url, customers=customers, seed=seed, today=day, progress=report)
    table = Table("table", "rows", title="Demo shop")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


def _print_report(report) -> None:
    """A run's counts as a table in the marketer's words (shopmail/run/vocabulary.py)."""
    from shopmail.run.vocabulary import words

    table = Table(words("measure", "label"), words("count", "label"), title=report.title())
    if report.dry_run:
        table.add_row(words("would_send", "count"), f"{report.would_send():,}")
    for name, value in report.counts().items():
        table.add_row(words(name, "count"), f"{value:,}")
    skipped, variant = words("skipped_because", "label"), words("variant", "label")
    for reason, value in sorted(report.skipped.items()):
        table.add_row(f"  {skipped}: {words(reason)}", f"{value:,}")
    for name, value in sorted(report.variants.items()):
        table.add_row(f"  {variant}: {words(name, 'variant')}", f"{value:,}")
    console.print(table)
    if getattr(report, "zero_reason", ""):
        console.print(report.zero_reason, highlight=False, soft_wrap=True)


def use_local_prefect() -> None:
    """Without PREFECT_API_URL, point this process at the local Prefect server, starting it the first
    time (it keeps running for the next commands: shopmail/run/local_prefect.py). Must run before
    Prefect is imported."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from shopmail.run import local_prefect

    data_dir = get_settings().data_dir.resolve()
    server = local_prefect.recorded(data_dir)
    if server is None:
        with console.status("starting the local Prefect server (once; later commands reuse it)") as status:
            server = local_prefect.ensure(
                data_dir, progress=lambda s: status.update(f"starting the local Prefect server: {s:.0f} s")
            )
    os.environ["PREFECT_API_URL"] = server.url
    if server.started_now:
        console.print(
            f"Local Prefect server started: {server.ui} (the UI; it keeps running for the next commands, "
            "`shopmail server stop` stops it)",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def run(
    campaign: Annotated[str, typer.Argument(help="Campaign name (see `shopmail campaigns`).")],
    as_of: AsOf = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Select and render only.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Send to at most this many.")] = None,
    segment: Annotated[str | None, typer.Option(help="Only customers of this segment.")] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Approve an unusually large audience in advance.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="If another run holds some of these mails, wait until its lease ends and send them.",
        ),
    ] = False,
) -> None:
    """Run one campaign now through the Prefect flow.

    Exit code 3 when some mails are held by another run (sending them now, or dead: they are taken
    over when its lease ends, by the recovery step or by `--wait`)."""
    import time

    from flows.forms import segment_id
    from shopmail.campaigns import get_campaign, require_enabled

    require_enabled(get_campaign(campaign))  # clear error for an unknown or disabled campaign
    segment_id(segment)  # an unknown or broken segment: its error before any work
    _refuse_demo_sending(get_settings(), dry_run)
    use_local_prefect()  # before Prefect is imported
    from flows.campaign import configured_campaign_flow

    settings = get_settings()
    give_up = time.monotonic() + 3 * settings.claim_lease_seconds + 60
    quiet_user_errors()
    while True:
        report = configured_campaign_flow()(
            campaign=campaign,
            as_of=_day(as_of),
            dry_run=dry_run,
            limit=limit,
            segment=segment,
            preapproved=yes,
        )
        _print_report(report)
        held = getattr(report, "held_runs", None)
        if dry_run or not held:
            break
        console.print(held_sentence(report, waiting=wait), highlight=False, soft_wrap=True)
        if not wait or time.monotonic() > give_up:
            raise typer.Exit(HELD_EXIT)
        pause = seconds_until(report.held_until) + 2
        with console.status(f"waiting {pause:.0f} s for the other run's lease to end"):
            time.sleep(max(1.0, pause))
    if settings.mail_provider == "outbox" and not dry_run:
        console.print(f"Outbox: {settings.outbox_path}")


HELD_EXIT = 3  # some mails are held by another run: not sent by this one (see `held_sentence`)


def seconds_until(iso_utc: str) -> float:
    """Seconds from now until a naive-UTC ISO time (0 when it passed or is unknown)."""
    from shopmail.state.state_db import utcnow

    if not iso_utc:
        return 0.0
    return max(0.0, (datetime.fromisoformat(iso_utc) - utcnow()).total_seconds())


def held_sentence(report: Any, *, waiting: bool) -> str:
    """Which runs hold some of this run's mails, whether they live, and when their mails are taken over."""
    from shopmail.state.state_db import get_run, upgrade, utcnow

    state = upgrade(get_settings().state_url_resolved)
    lease = get_settings().claim_lease_seconds
    parts = []
    for run_id, count in sorted(report.held_runs.items(), key=lambda item: -item[1]):
        other = get_run(state, run_id) or {}
        beat = other.get("heartbeat_at") or other.get("started_at")
        age = (utcnow() - beat).total_seconds() if beat is not None else None
        alive = other.get("status") == "running" and age is not None and age < lease
        campaign = other.get("campaign", "?")
        who = "this run's earlier attempt" if run_id == report.run_id else f"run {run_id} of {campaign}"
        state_words = (
            f"was last seen alive {age:.0f} s ago (it is sending them, or it died since)"
            if alive
            else "stopped without finishing them"
        )
        parts.append(f"{count:,} by {who}, which {state_words}")
    until = report.held_until.replace("T", " ") if report.held_until else "soon"
    then = (
        "waiting for it, then sending them"
        if waiting
        else "they are taken over when its lease ends, by the recovery step or by this command with --wait"
    )
    held = "; ".join(parts)
    return f"Not sent by this run: mails held by another run ({held}); lease ends at {until} UTC: {then}."


@app.command()
def poll(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Select and render only.")] = False,
) -> None:
    """Run the service-mail poller once (what its deployment does every 5 minutes)."""
    use_local_prefect()
    from flows.service_poller import service_poller

    _refuse_demo_sending(get_settings(), dry_run)
    quiet_user_errors()
    reports = service_poller(dry_run=dry_run)
    if not reports:
        console.print("No service mails due.")
    for report in reports.values():
        _print_report(report)


def run_note(run: dict[str, Any]) -> str:
    """What `shopmail history` adds under the table for a run: why it stopped, late mails."""
    details = run.get("details") or {}
    notes = []
    if run["status"] in ("crashed", "interrupted") and details.get("problem"):
        notes.append(str(details["problem"]))
    if details.get("zero_reason"):  # a run that sent nothing: why
        notes.append(str(details["zero_reason"]).rstrip("."))
    if details.get("late_sent"):
        notes.append(
            f"{int(details['late_sent']):,} of its mails were sent after this run's report was written "
            "(a batch that outlived its flow); the counts above include them"
        )
    if details.get("recovery_attempts"):
        notes.append(f"finished by the recovery step ({details['recovery_attempts']} time(s))")
    return "; ".join(notes)


@app.command()
def recover(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be done.")] = False,
) -> None:
    """Close runs whose process died and send the mails they left open (what the `recovery`
    deployment does every few minutes)."""
    use_local_prefect()
    from flows.recovery import recovery

    done = recovery(dry_run=dry_run)
    console.print(
        f"Runs closed: {done['closed']}, runs finished: {done['resumed']}, runs with late mails noted: "
        f"{done['late']}."
    )


@app.command()
def server(
    action: Annotated[str, typer.Argument(help="status, start or stop")] = "status",
) -> None:
    """The local Prefect server that `run`, `poll`, `demo` and `serve` use without PREFECT_API_URL."""
    from shopmail.run import local_prefect

    data_dir = get_settings().data_dir.resolve()
    if action == "start":
        use_local_prefect()
        found = local_prefect.recorded(data_dir)
        console.print(f"Local Prefect server: {found.ui if found else '?'}", highlight=False)
    elif action == "stop":
        stopped = local_prefect.stop(data_dir)
        console.print(
            f"Stopped the local Prefect server {stopped.ui}." if stopped else "No local Prefect server ran."
        )
    elif action == "status":
        found = local_prefect.recorded(data_dir)
        if os.environ.get("PREFECT_API_URL"):
            console.print(
                f"PREFECT_API_URL is set: commands use {os.environ['PREFECT_API_URL']}.", highlight=False
            )
        console.print(
            f"Local Prefect server running: {found.ui} (process {found.pid})"
            if found
            else "No local Prefect server runs.",
            highlight=False,
        )
    else:
        console.print("[red]The action is status, start or stop.[/]")
        raise typer.Exit(2)


@app.command()
def campaigns(output: FormatOption = OutputFormat.table) -> None:
    """List the campaigns of the registry."""
    from shopmail.campaigns import broken_campaigns, disabled_reason, registry

    settings = get_settings()
    rows = []
    for c in registry().values():
        off = disabled_reason(c, settings.disabled_campaigns, settings.enabled_campaigns)
        rows.append(
            {
                "name": c.name,
                "kind": str(c.kind),
                "schedule": c.schedule,
                "marketing": c.marketing,
                "enabled": not off,
                "disabled_reason": off or "",
                "title": c.title,
                "broken": "",
            }
        )
    broken = broken_campaigns()
    rows += [
        {"name": n, "kind": "", "schedule": None, "marketing": None, "enabled": False, "title": ""}
        | {"disabled_reason": f"broken: {reason}", "broken": reason}
        for n, reason in broken.items()
    ]
    if output == OutputFormat.json:
        _print_json(rows)
        return
    table = Table("name", "kind", "schedule", "marketing", "enabled", "title")
    for r in rows:
        if r["broken"]:
            table.add_row(r["name"], "[red]broken[/]", "-", "-", "no", "disabled: see below")
            continue
        enabled = f"[yellow]no[/]: {r['disabled_reason']}" if not r["enabled"] else "yes"
        table.add_row(
            r["name"], r["kind"], r["schedule"] or "-", "yes" if r["marketing"] else "no", enabled, r["title"]
        )
    console.print(table)
    for name, reason in broken.items():
        console.print(f"[red]{name}[/] is disabled (the other campaigns run): {reason}", highlight=False)


@app.command("check-shop")
def check_shop_command(
    output: FormatOption = OutputFormat.table,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
    as_of: AsOf = None,
) -> None:
    """Check the shop database as every enabled campaign will read it: the data contract table by
    table, unmapped values, the shop profile, and a dry run of each enabled campaign (the same
    extraction, data checks, audience selection and preflight render as `shopmail run --dry-run`).

    Exit code 1 when an enabled campaign's dry run does not complete."""
    from shopmail.campaigns import is_enabled, registry
    from shopmail.db import get_engine
    from shopmail.run.campaign_check import dry_run_enabled
    from shopmail.shop.check_shop import check_shop
    from shopmail.shop.extract import day_end_utc
    from shopmail.state.state_db import upgrade, utcnow

    settings = get_settings()
    specs = dict(registry())
    enabled = {
        n: is_enabled(c, settings.disabled_campaigns, settings.enabled_campaigns) for n, c in specs.items()
    }
    shop = get_engine(settings.shop_url_resolved)
    now = utcnow()
    day = _day(as_of) or datetime.now(settings.tz).date()
    result = check_shop(
        shop,
        specs,
        enabled,
        min(now, day_end_utc(day, settings.tz)),  # the shop as it stood on the day checked
        shop=safe_url(settings.shop_url_resolved),
        coupon_table=settings.coupon_target,
        max_order_age_days=settings.max_order_age_days,
        pages=_page_settings(settings),
    )
    _add_profile(result, settings)
    result.as_of = day.isoformat()
    quiet = as_json or output == OutputFormat.json
    progress = None if quiet else (lambda name: console.print(f"dry run: {name} ...", style="dim"))
    state = upgrade(settings.state_url_resolved)
    result.apply_dry_runs(dry_run_enabled(specs, enabled, day, settings, shop, state, now, progress))
    if quiet:
        _print_json(result.to_dict())
    else:
        _print_shop_check(result)
    if not result.ok:
        raise typer.Exit(1)


def _page_settings(settings: Settings) -> dict[str, str]:
    return {
        "SHOPMAIL_CART_PATH": settings.cart_path,
        "SHOPMAIL_ACCOUNT_PATH": settings.account_path,
        "SHOPMAIL_ORDERS_PATH": settings.orders_path,
        "SHOPMAIL_PRODUCT_PATH": settings.product_path,
    }


def _add_profile(result, settings: Settings) -> None:
    """The shop profile on the check, and what a real send would refuse (config/shop_profile.py)."""
    from dataclasses import asdict

    from config.settings import demo_values_in_use, env_name
    from config.shop_profile import profile_rows

    result.profile = [asdict(row) for row in profile_rows(settings)]
    result.profile_missing = [env_name(f) for f in demo_values_in_use(settings, sender=True, profile=True)]
    demo = _demo_shop(settings)
    if is_real_send(settings, demo):
        result.real_send = real_send_purpose(settings)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _print_shop_check(result) -> None:
    """The check-shop result as rich tables: profile, datasets, columns, unmapped values, findings,
    campaigns."""
    console.print(
        f"Shop database: {result.shop}  (checked {result.checked_at} UTC; campaigns dry-run for "
        f"{result.as_of})",
        highlight=False,
    )
    profile = Table("setting", "meaning", "value", title="Shop profile (what customers see)")
    for row in result.profile:
        value = row["value"] + (" [red](demo value)[/]" if row["demo"] else "")
        profile.add_row(row["setting"], row["meaning"], value)
    console.print(profile)
    if result.profile_missing:
        when = (
            f"A real send ({result.real_send}) is refused"
            if result.real_send
            else "A real send (SendGrid, or a shop database that is not the demo shop) would be refused"
        )
        console.print(
            f"[yellow]{when} until these are set:[/] {', '.join(result.profile_missing)}", highlight=False
        )
    if result.kit:
        console.print(f"Platform kit installed: {result.kit}", highlight=False)
        for page in result.kit_pages:
            mark = "ok" if page.matches else "[yellow]differs[/]"
            console.print(
                f"  {page.setting}: {page.current or '-'} (the platform's page: {page.kit_path}) {mark}",
                highlight=False,
            )
    tables = Table("dataset", "exists", "rows", "last 30 days", title="Datasets")
    for d in result.datasets:
        exists = "yes" if d.exists else ("[yellow]no (optional)[/]" if d.optional else "[red]no[/]")
        recent = "-" if d.rows_last_30_days is None else f"{d.rows_last_30_days:,}"
        tables.add_row(d.name, exists, "-" if d.rows is None else f"{d.rows:,}", recent)
    console.print(tables)
    columns = Table("column", "required", "type", "NULL", "zero dates", "outside allowed", title="Columns")
    for d in result.datasets:
        for c in d.columns:
            null = "-" if c.null_rate is None else f"{c.null_rate:.1%}"
            outside = ", ".join(f"{v} ({n})" for v, n in c.outside.items()) or "-"
            present = "" if c.present else " [red](missing)[/]" if c.required else " [yellow](missing)[/]"
            columns.add_row(
                f"{d.name}.{c.name}{present}",
                "yes" if c.required else "no",
                c.type + (f" [red]({c.bad_type} bad)[/]" if c.bad_type else ""),
                null,
                str(c.zero_dates or "-"),
                outside,
            )
    console.print(columns)
    if result.unmapped:
        unmapped = Table("what", "value", "name", "rows", "what to do", title="Values Shopmail could not map")
        for u in result.unmapped:
            unmapped.add_row(u.what, u.value, u.label or "-", f"{u.rows:,}", u.fix or "-")
        console.print(unmapped)
    if result.currencies:
        listed = ", ".join(f"{code} ({n:,})" for code, n in result.currencies.items())
        console.print(f"Order currencies: {listed}", highlight=False)
    if result.newest_order:
        console.print(f"Newest order: {result.newest_order} UTC ({result.newest_order_age_hours} h ago)")
    if result.coupons_writable is not None:
        verdict = "yes" if result.coupons_writable else "[red]no[/]"
        console.print(
            f"Coupons can be written into `{result.coupon_table}`: {verdict} {result.coupon_problem}"
        )
    colour = {"error": "red", "warning": "yellow", "info": "dim"}
    for f in result.findings:
        where = f"{f.dataset}.{f.column}" if f.column else f.dataset
        console.print(f"[{colour.get(f.level, 'white')}]{f.level}[/] {where}: {f.message}", highlight=False)
    verdicts = Table(
        "campaign", "enabled", "dry run", "audience", "eligible", "where", "why not", title="Campaigns"
    )
    for c in result.campaigns:
        if not c.enabled:
            run = "off"
        elif c.can_run:
            run = "completes"
        else:
            run = f"[red]stops[/] ({c.stage})" if c.stage else "[red]no[/]"
        where = f"{c.dataset}.{c.column}" if c.column else c.dataset or "-"
        verdicts.add_row(
            c.name,
            "yes" if c.enabled else "no",
            run,
            _count(c.audience),
            _count(c.eligible),
            where,
            "; ".join(c.reasons) or "-",
        )
    console.print(verdicts)
    if result.blocked:
        console.print(
            f"[red]{len(result.blocked)} enabled campaign(s) cannot run[/]: fix the data or disable them"
        )
    else:
        console.print("Every enabled campaign's dry run completes.")


@app.command()
def preview(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    customer: Annotated[int, typer.Option(help="Customer id.")],
    as_of: AsOf = None,
    html: Annotated[Path | None, typer.Option(help="Write the HTML part to this file.")] = None,
) -> None:
    """Show the mail one customer would get (nothing is sent, nothing recorded)."""
    from shopmail.run.preview import preview_mail

    result = preview_mail(campaign, customer, _day(as_of))
    if result.mail is None:
        console.print(f"[yellow]Customer {customer} gets no '{campaign}' mail: {result.reason}[/]")
        raise typer.Exit(1)
    mail = result.mail
    console.print(f"[bold]To:[/] {mail.to_name} <{mail.to_email}>")
    console.print(f"[bold]Subject:[/] {mail.subject}")
    for name, value in mail.headers.items():
        console.print(f"[bold]{name}:[/] {value}")
    console.print()
    console.print(mail.text, markup=False, highlight=False)
    if html:
        html.write_text(mail.html, encoding="utf-8")
        console.print(f"HTML written to {html}")


@app.command()
def gallery(
    out: Annotated[
        Path | None, typer.Option(help="Folder for the page and the mails (default: <data dir>/gallery).")
    ] = None,
) -> None:
    """Every campaign's mail in every language, from sample data, at phone and desktop width on one
    page (nothing is sent); also lists subjects and preheaders that are too long."""
    from shopmail.run.gallery import all_sample_mails, length_warnings, write_gallery

    settings = get_settings()
    folder = out or settings.data_dir / "gallery"
    samples = all_sample_mails(settings)
    index = write_gallery(samples, folder)
    for warning in length_warnings(settings):
        typer.echo(warning)
    typer.echo(f"{len(samples)} sample mails: open {index.resolve().as_uri()}")


@app.command()
def history(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    idle_polls: Annotated[
        bool, typer.Option("--idle-polls", help="Also service polls that sent nothing.")
    ] = False,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Recent runs from the state DB."""
    from shopmail.state import state_db
    from shopmail.state.coupons import coupons_waiting
    from shopmail.state.ledger import in_doubt_counts

    state = state_db.upgrade(get_settings().state_url_resolved)
    runs = state_db.recent_runs(state, campaign, limit, idle_polls)
    waiting = coupons_waiting(state, campaign)
    doubt = in_doubt_counts(state, campaign)
    if output == OutputFormat.json:
        columns = ("run_id", "campaign", "as_of", "dry_run", "status", "audience", "sent", "skipped")
        columns += ("failed", "rejected", "quarantined", "started_at", "finished_at")
        _print_json(
            {
                "runs": [{k: r.get(k) for k in columns if k in r} for r in runs],
                "coupons_waiting": waiting,
                "in_doubt": doubt,
            }
        )
        return
    table = Table(
        "started (UTC)",
        "campaign",
        "as of",
        "mode",
        "status",
        "audience",
        "sent",
        "skipped",
        "failed",
        "quarantined",
        "delivered",
        "opened by people",
        "clicked",
    )
    from shopmail.results.engagement import engagement_of_runs
    from shopmail.results.results_text import pct
    from shopmail.run.vocabulary import words

    runs = state_db.recent_runs(state, campaign, limit, idle_polls)
    engaged = engagement_of_runs(state, [r["run_id"] for r in runs])
    for r in runs:
        e = engaged.get(r["run_id"])
        table.add_row(
            f"{r['started_at']:%Y-%m-%d %H:%M}",
            r["campaign"],
            str(r["as_of"]),
            "dry run" if r["dry_run"] else "send",
            words(r["status"], "status"),
            str(r["audience"]),
            str(r["sent"]),
            str(r["skipped"]),
            str(r["failed"]),
            str(r["quarantined"]),
            "-" if e is None else f"{e.delivered:,}",
            "-" if e is None else f"{e.opened:,} ({pct(e.open_rate)})",
            "-" if e is None else f"{e.clicked:,} ({pct(e.click_rate)})",
        )
    console.print(table)
    for r in state_db.recent_runs(state, campaign, limit, idle_polls):
        note = run_note(r)
        if note:
            console.print(f"{r['campaign']} {r['started_at']:%Y-%m-%d %H:%M}: {note}", highlight=False)
    from shopmail.state.coupons import coupons_waiting
    from shopmail.state.ledger import in_doubt_counts

    waiting = coupons_waiting(state, campaign)
    if waiting:  # issued in the shop, mail not sent (failed, in doubt, crashed): the rerun sends them
        listed = ", ".join(f"{name} {count:,}" for name, count in sorted(waiting.items()))
        console.print(f"Coupons waiting for their mail (a rerun sends them): {listed}")
    if doubt:
        listed = ", ".join(f"{name} {count:,}" for name, count in sorted(doubt.items()))
        console.print(f"Mails in doubt, waiting for proof of acceptance: {listed}")


@app.command()
def report(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    since: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First day of mails (default: 30 days).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day of mails (default: today).")
    ] = None,
    window_days: Annotated[int, typer.Option(min=1, max=90, help="Days after a mail an order counts.")] = 7,
    chart: Annotated[
        Path | None, typer.Option(help="SVG chart path (default: <data_dir>/reports/<campaign>-<day>.svg).")
    ] = None,
    by: Annotated[
        str, typer.Option(help="One row per: variant, language, segment, run or test_phase (A/B phase).")
    ] = "variant",
    machine_opens: Annotated[
        bool, typer.Option("--machine-opens", help="Count machine opens (Apple Mail) as opens.")
    ] = False,
) -> None:
    """Measured results: what the mails did (delivered, opened, clicked per link, unsubscribed), orders
    and revenue after a click, and the holdout uplift: mailed vs random holdout, p-value."""
    from datetime import UTC

    from shopmail.campaigns import get_campaign
    from shopmail.db import get_engine
    from shopmail.mail.links import unsubscribe_prefix
    from shopmail.results.attribution import campaign_result, default_period
    from shopmail.results.engagement import DIMENSIONS, report_for_days
    from shopmail.results.report_chart import default_chart_path, save_chart
    from shopmail.state import state_db

    settings = get_settings()
    spec = get_campaign(campaign)
    if by not in DIMENSIONS:
        raise typer.BadParameter(f"--by {by}: choose one of {', '.join(DIMENSIONS)}")
    today = datetime.now(UTC).astimezone(settings.tz).date()
    first, last = default_period(today, _day(since), _day(until))
    if last < first:
        raise typer.BadParameter(f"--until {last} is before --since {first}")
    state = state_db.upgrade(settings.state_url_resolved)
    shop = get_engine(settings.shop_url_resolved)
    engaged = report_for_days(
        state,
        shop,
        spec.name,
        first,
        last,
        settings.tz,
        by=(by,),
        window_days=window_days,
        unsubscribe_prefix=unsubscribe_prefix(settings.unsubscribe_url),
        with_machine_opens=machine_opens,
    )
    _print_engagement(engaged, f"{spec.name}: what the mails did, {first} – {last}")
    if spec.is_series:  # entered, each step, exits, orders: mailed vs held out
        from shopmail.results.series_funnel import series_funnel

        funnel_table = Table("measure", "count", title=f"{spec.name}: the series funnel (all entries)")
        for measure, value in series_funnel(state, shop, spec).rows():
            funnel_table.add_row(measure, value)
        console.print(funnel_table)
    result = campaign_result(state, shop, spec.name, first, last, settings.tz, window_days)
    table = Table("measure", "mailed", "holdout", "uplift", "relative", title=result.title())
    for row in result.rows():
        table.add_row(*row)
    console.print(table)
    p = result.p_value
    console.print(f"Conversion p-value (two-proportion z-test): {'-' if p is None else f'{p:.4f}'}")
    console.print(
        f"Coupons issued {result.coupons_issued:,}, used {result.coupons_used:,} "
        f"(by {result.coupon_converters:,} customers; not in the uplift)"
    )
    if not result.holdout.recipients:
        console.print("[yellow]No holdout group in this period: set holdout_percent in the campaign file.[/]")
    total = engaged.total
    console.print(
        f"Revenue after click: {total.orders_after_click:,} orders, {total.revenue_after_click:,.2f} "
        f"(incremental revenue from the holdout: "
        f"{'-' if result.incremental_revenue is None else f'{result.incremental_revenue:,.2f}'})."
    )
    from shopmail.results.results_text import which_is_which

    console.print(which_is_which(window_days), highlight=False)
    path = save_chart(result, chart or default_chart_path(settings.data_dir, spec.name, last))
    console.print(f"Chart: {path}")


def _print_engagement(engaged, title: str) -> None:
    """The engagement tables of `shopmail report`: per group, then the most clicked links."""
    from shopmail.results.engagement import MACHINE_OPENS_NOTE
    from shopmail.results.results_text import engagement_rows, link_rows

    columns = (
        "mails",
        "sent",
        "delivery rate",
        "bounced (hard / soft / blocked)",
        "open rate",
        "opened by a machine (Apple Mail)",
        "click rate",
        "median time to first click",
        "unsubscribed",
        "spam reports",
        "orders after a click",
        "revenue after a click",
    )
    table = Table(*columns, title=title)
    for row in engagement_rows(engaged):
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
    if not engaged.with_machine_opens:
        console.print(MACHINE_OPENS_NOTE, highlight=False)
    links = link_rows(engaged, limit=15)
    if links:
        table = Table(*links[0], title="Links clicked (most first)")
        for row in links:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)


@app.command()
def segment(
    name: Annotated[str | None, typer.Argument(help="Segment name (config/segments.toml).")] = None,
    list_segments: Annotated[bool, typer.Option("--list", help="List the segments.")] = False,
    as_of: AsOf = None,
    sample: Annotated[int, typer.Option(min=0, max=1000, help="Members to show.")] = 10,
    history_days: Annotated[
        int, typer.Option(min=1, max=3650, help="Days of orders the features read.")
    ] = 365,
) -> None:
    """Preview a segment: definition, size, share of the base, a sample (no e-mail addresses)."""
    from segments.rules import SegmentError, load_segments

    catalogue = load_segments(strict=False)  # a bad segment is listed as disabled, the others work
    if list_segments or name is None:
        table = Table("name", "title", "reads", "description", title="Segments (config/segments.toml)")
        for n in catalogue.names():
            s = catalogue.get(n)
            table.add_row(n, s.title, ", ".join(catalogue.fields(n)), s.description)
        for n in catalogue.broken:
            table.add_row(n, "[red]broken[/]", "-", "disabled: see below")
        console.print(table)
        for n, reason in catalogue.broken.items():
            console.print(f"[red]{n}[/] is disabled: {reason}", markup=True, highlight=False)
        return
    from segments.segment_preview import preview_segment
    from shopmail.db import get_engine
    from shopmail.shop.extract import extract

    settings = get_settings()
    day = _day(as_of) or datetime.now(settings.tz).date()
    try:
        datasets = catalogue.datasets(name)
    except SegmentError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    frames = extract(get_engine(settings.shop_url_resolved), datasets, day, settings.tz, history_days)
    shown = preview_segment(name, frames, day, settings.tz, sample)
    console.print(f"[bold]{shown.name}[/]: {shown.title}", highlight=False)
    if shown.description:
        console.print(shown.description, highlight=False)
    console.print("\n".join(shown.definition), markup=False, highlight=False)
    console.print(
        f"As of {day}: {shown.size:,} of {shown.base:,} customers ({shown.share:.1%}), "
        f"{shown.subscribed:,} with marketing consent",
        highlight=False,
    )
    if len(shown.sample):
        table = Table("id", "first name", "city", "spend", "RFM", title=f"Sample of {len(shown.sample)}")
        for r in shown.sample.to_dict("records"):
            spend = r["total_spend"]
            table.add_row(
                str(r["customer_id"]),
                r["first_name"] or "-",
                r["city"] if isinstance(r["city"], str) else "-",
                "-" if spend is None or spend != spend else f"{spend:,.0f}",  # None / NaN
                str(r["rfm_label"] or "-"),
            )
        console.print(table)


@app.command()
def why(
    customer_id: Annotated[int, typer.Argument(help="Customer id.")],
    campaign: Annotated[
        str | None, typer.Option(help="The campaign (its latest mail to the customer, or of --day).")
    ] = None,
    day: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="The shop day of the run to explain.")
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="A run id (the Prefect flow run id), for operators.", hidden=True),
    ] = None,
) -> None:
    """Why a customer got (or did not get) a campaign's mail: segment rule on their values, ledger."""
    from shopmail.run.why import explain, latest_run_for, run_of_day
    from shopmail.state import state_db

    settings = get_settings()
    state = state_db.upgrade(settings.state_url_resolved)
    if run_id is None:
        if campaign is None:
            console.print("[red]Give --campaign NAME (and --day YYYY-MM-DD for one day's run).[/]")
            raise typer.Exit(2)
        when = _day(day)
        run_id = (
            run_of_day(state, customer_id, campaign, when)
            if when
            else latest_run_for(state, customer_id, campaign)
        )
        if run_id is None:
            of_day = f" for {when}" if when else ""
            console.print(f"[yellow]No '{campaign}' run{of_day} in the ledger for customer {customer_id}.[/]")
            raise typer.Exit(1)
    console.print(explain(customer_id, run_id, data_dir=settings.data_dir, state=state).text(), markup=False)


@app.command()
def deployments(
    write: Annotated[Path | None, typer.Option(help="Write prefect.yaml here.")] = None,
    pool: Annotated[str, typer.Option(help="Work pool for prefect.yaml.")] = "shopmail",
) -> None:
    """The deployments generated from the campaign registry (and `prefect.yaml` for work pools)."""
    from flows.deploy import deployment_specs, prefect_yaml

    if write:
        write.write_text(prefect_yaml(pool), encoding="utf-8")
        console.print(f"Wrote {write} (work pool '{pool}'); deploy with `shopmail deploy`.")
        return
    tz = get_settings().timezone
    table = Table("deployment", "schedule", "parameters", "tags", title=f"Deployments (cron in {tz})")
    for spec in deployment_specs():
        params = ", ".join(f"{k}={v}" for k, v in spec.parameters.items())
        table.add_row(spec.name, spec.cron or "manual", params, ", ".join(spec.tags))
    console.print(table)


@app.command()
def serve() -> None:
    """Serve every deployment from this process (needs a Prefect server: PREFECT_API_URL).

    SHOPMAIL_SERVE_ONLY serves only the named deployments; SHOPMAIL_POLL_CRON sets the service
    poller's schedule.
    """
    _refuse_demo_sending(get_settings(), dry_run=False)  # the served runs would mail real people
    use_local_prefect()  # without PREFECT_API_URL: the local server (its UI shows the deployments)
    from prefect import serve as prefect_serve

    from flows.deploy import runner_deployments, served_specs, use_quiet_logging

    try:
        served_specs()
    except ValueError as exc:  # SHOPMAIL_SERVE_ONLY names an unknown deployment
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    use_quiet_logging()  # no "Finished in state Completed()" per task in the runs' logs
    from flows.run_names import start_run_namer

    start_run_namer()  # waiting runs get their meaningful names, not random ones, before they start
    prefect_serve(*runner_deployments(), limit=get_settings().workers * 2)


@app.command()
def deploy(
    prefect_file: Annotated[Path, typer.Option(help="The generated prefect.yaml.")] = Path("prefect.yaml"),
    forms_only: Annotated[
        bool, typer.Option("--forms-only", help="Only set the run forms (after your own `prefect deploy`).")
    ] = False,
) -> None:
    """Deploy onto work pools: `prefect deploy --all` from prefect.yaml, then each deployment's run
    form as `shopmail serve` gives it (needs PREFECT_API_URL and the work pool)."""
    import subprocess

    from flows.deploy import deploy_to_pools

    try:
        done = deploy_to_pools(prefect_file, run_prefect_deploy=not forms_only)
    except (ValueError, subprocess.CalledProcessError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"Run forms set for {len(done)} deployments: {', '.join(done)}")


@app.command("sendgrid-sink")
def sendgrid_sink(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8025,
    api_key: Annotated[str | None, typer.Option(help="Only accept this key (default: any).")] = None,
    rate_429: Annotated[float, typer.Option(min=0, max=1, help="Share of requests answered 429.")] = 0.0,
    rate_5xx: Annotated[float, typer.Option(min=0, max=1, help="Share answered 500/503.")] = 0.0,
    rate_timeout: Annotated[float, typer.Option(min=0, max=1, help="Share that stall.")] = 0.0,
    rate_drop: Annotated[float, typer.Option(min=0, max=1, help="Share dropped, no answer.")] = 0.0,
    slow_ms: Annotated[int, typer.Option(min=0, help="Latency added to every request.")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Another Host name clients use, e.g. a container name (repeatable)."),
    ] = None,
) -> None:
    """Run the local SendGrid-compatible server (mails at http://HOST:PORT/sink, opened with the key
    it prints; requests naming any other host are refused)."""
    from shopmail.devtools.sendgrid_sink import serve
    from shopmail.devtools.sink_faults import Faults

    faults = Faults(
        rate_429=rate_429,
        rate_500=rate_5xx / 2,
        rate_503=rate_5xx / 2,
        rate_timeout=rate_timeout,
        rate_drop=rate_drop,
        slow_ms=slow_ms,
        seed=seed,
    )
    serve(
        host=host,
        port=port,
        api_key=api_key,
        faults=faults,
        allow_hosts=allow_host or (),
        announce=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
    )


@app.command("feedback-app")
def feedback_app(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8030,
) -> None:
    """Run the one-click unsubscribe endpoint and the SendGrid event webhook."""
    from shopmail.web.feedback_app import serve

    settings = get_settings()
    _refuse_demo_settings(settings, "the feedback app")
    console.print(f"Feedback app on http://{host}:{port} (/unsubscribe, /sendgrid/events)")
    serve(settings, host=host, port=port)


def _ensure_demo_shop(day: date, customers: int) -> None:
    """(Re)generate the embedded demo shop when it is missing or was made for another day/size."""
    import json

    settings = get_settings()
    marker = settings.data_dir / "demo_shop.json"
    wanted = {"today": day.isoformat(), "customers": customers, "seed": 42}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return
    demo_data(customers=customers, seed=42, today=datetime.combine(day, datetime.min.time()))
    marker.write_text(json.dumps(wanted))


def _print_day(day: date, results: dict[str, dict[str, int | str]]) -> None:
    columns = ("audience", "eligible", "sent", "skipped", "holdout", "failed")
    table = Table(title=f"Daily schedule for {day.isoformat()}")
    table.add_column("campaign", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    for name, counts in results.items():
        status = "ok" if counts["status"] == "completed" else str(counts["status"])
        table.add_row(name, status, *(f"{counts[c]:,}" if c in counts else "-" for c in columns))
    console.print(table)
    quarantined = max((int(c.get("quarantined", 0)) for c in results.values()), default=0)
    if quarantined:
        console.print(f"{quarantined:,} shop rows quarantined by the data checks (`shopmail history`).")
    for name, counts in results.items():
        if counts.get("reason"):
            console.print(f"{name}: {counts['reason']}", markup=False, highlight=False)


def failed_campaigns(results: dict[str, dict[str, int | str]]) -> list[str]:
    """Campaigns of a daily schedule that did not complete (failed, disabled)."""
    return [name for name, counts in results.items() if counts["status"] != "completed"]


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=10, help="Demo shop size.")] = 5000,
    as_of: AsOf = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Select and render only.")] = False,
    days: Annotated[int, typer.Option(min=1, max=14, help="Shop days to run, the last one --as-of.")] = 3,
    outbox: Annotated[
        bool,
        typer.Option("--outbox", help="One day into the outbox (.eml files), without the SendGrid loop."),
    ] = False,
) -> None:
    """Run a few shop days of the whole schedule on the demo shop through the local SendGrid server
    (recipients who open, click, bounce, unsubscribe), an A/B test of a subject, then the results.

    With --outbox (or --dry-run): one day's schedule into the outbox."""
    settings = get_settings()
    _refuse_demo_sending(settings, dry_run)
    quiet_user_errors()
    from shopmail.devtools.demo_shop import latest_demo_day

    # default: today, or yesterday before the demo's 06:00 shop time (no demo order in the future)
    day = _day(as_of) or latest_demo_day()
    loop = not (outbox or dry_run)
    if settings.shop_db_url is None:  # the shop as it stood on the first day: no later day sees the future
        _ensure_demo_shop(day - timedelta(days=days - 1) if loop else day, customers)
    use_local_prefect()  # before Prefect is imported
    if not loop:
        from flows.daily_schedule import daily_schedule

        results = daily_schedule(as_of=day, dry_run=dry_run, preapproved=True)
        _print_day(day, results)
        outbox_path = settings.outbox_path
        if settings.mail_provider == "outbox" and outbox_path.exists():
            files = sorted(outbox_path.glob("*.eml"))
            console.print(f"{len(files)} mail(s) in {outbox_path}; e.g. {files[0] if files else '-'}")
    else:
        results = _demo_loop(day, days)
    failed = failed_campaigns(results)
    if failed:
        typer.echo(
            f"{len(failed)} of {len(results)} campaigns did not complete: {', '.join(failed)} "
            "(reasons above). "
            "Fix them and run the day again: the send ledger sends only what is missing.",
            err=True,
        )
        raise typer.Exit(1)


def _demo_loop(day: date, days: int) -> dict[str, dict[str, int | str]]:
    """The demo days through the local loop (shopmail/devtools/demo_loop.py); returns each campaign's
    worst result over the days. The demo's settings hold for the demo only (restored after it)."""
    from shopmail.campaigns import registry

    saved = dict(os.environ)
    try:
        return _demo_days(day, days)
    finally:
        from flows.forms import campaign_titles

        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        registry.cache_clear()
        campaign_titles.cache_clear()


def _demo_days(day: date, days: int) -> dict[str, dict[str, int | str]]:
    from shopmail.campaigns import registry
    from shopmail.db import get_engine
    from shopmail.devtools.demo_loop import AB_CAMPAIGN, demo_engagement, demo_env, plant_orders
    from shopmail.devtools.local_loop import local_loop
    from shopmail.state import state_db

    os.environ.update(demo_env(get_settings()))
    # the temporary Prefect server of a busy laptop may need longer than Prefect's 20 s to start
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    get_settings.cache_clear()
    registry.cache_clear()
    settings = get_settings()
    state = state_db.upgrade(settings.state_url_resolved)
    started = state_db.utcnow() - timedelta(seconds=1)
    combined: dict[str, dict[str, int | str]] = {}
    with local_loop(settings, state, demo_engagement()) as loop:
        os.environ.update(loop.env)
        get_settings.cache_clear()
        from flows.campaign import configured_campaign_flow
        from flows.daily_schedule import daily_schedule

        console.print(f"Local SendGrid server {loop.sink.url}, webhook -> feedback app {loop.app.url}")
        first = day - timedelta(days=days - 1)
        if AB_CAMPAIGN in registry():  # first: before the schedule's mails fill the frequency cap
            console.print(f"A/B test: {AB_CAMPAIGN} (test group, a short wait with live numbers, the winner)")
            try:
                report = configured_campaign_flow()(campaign=AB_CAMPAIGN, as_of=first, preapproved=True)
                combined[AB_CAMPAIGN] = {"status": "completed", **report.counts()}
            except Exception as exc:  # reported like the schedule's campaigns
                reason = redact(str(exc))[:500]
                combined[AB_CAMPAIGN] = {"status": f"failed: {type(exc).__name__}", "reason": reason}
        for offset in range(days - 1, -1, -1):
            shop_day = day - timedelta(days=offset)
            results = daily_schedule(as_of=shop_day, preapproved=True)
            _print_day(shop_day, results)
            for name, counts in results.items():
                if name not in combined or counts["status"] != "completed":
                    combined[name] = counts
        console.print("Waiting for the last webhook events (opens, clicks, bounces, unsubscribes)...")
        loop.drain(timeout_s=600)
        shop = get_engine(settings.shop_url_resolved)
        planted = plant_orders(shop, state, started)
        _print_results(state, shop, started, planted)
    return combined


def _print_results(state, shop, since: datetime, planted: int) -> None:
    """What the demo's mails did, per campaign; the A/B test; links; revenue after click and holdout."""
    from shopmail.devtools.demo_loop import AB_CAMPAIGN, campaigns_since
    from shopmail.mail.links import unsubscribe_prefix
    from shopmail.results.ab_stats import METRIC_WORDS
    from shopmail.results.attribution import load_mails, load_orders, measure
    from shopmail.results.engagement import MACHINE_OPENS_NOTE, engagement_report
    from shopmail.results.results_text import link_rows, money, pct, which_is_which
    from shopmail.state import ab_tests, state_db

    until = state_db.utcnow() + timedelta(minutes=1)
    prefix = unsubscribe_prefix(get_settings().unsubscribe_url)
    wide = Console(width=max(console.width, 160))  # the tables are wide: never squeezed to 80 columns
    columns = ("campaign", "sent", "delivered", "bounced", "open rate", "machine opens", "click rate",
               "unsubscribed", "spam", "orders after a click", "revenue after a click")  # fmt: skip
    table = Table(*columns, title="What the demo's mails did (from the SendGrid webhook)")
    reports = {}
    for name in campaigns_since(state, since):
        report = engagement_report(state, shop, name, since, until, by=(), unsubscribe_prefix=prefix)
        reports[name] = report
        t = report.total
        table.add_row(
            name, f"{t.sent:,}", pct(t.rate(t.delivered, t.sent)), f"{t.bounces:,}", pct(t.open_rate),
            f"{t.machine_opened:,}", pct(t.click_rate, 2), f"{t.unsubscribed:,}", f"{t.spam_reports:,}",
            f"{t.orders_after_click:,}", money(t.revenue_after_click),
        )  # fmt: skip
    wide.print(table)
    wide.print(MACHINE_OPENS_NOTE, highlight=False)
    wide.print(f"The demo's shoppers placed {planted:,} orders after clicks (a share of the clickers).")
    tests = ab_tests.recent_tests(state, AB_CAMPAIGN, limit=1)
    if tests and tests[0].get("decision"):
        test = tests[0]
        rows = test["decision"]["numbers"]
        ab = Table(
            *rows[0], title=f"A/B test of {AB_CAMPAIGN} ({METRIC_WORDS.get(test['metric'], test['metric'])})"
        )
        for row in rows:
            ab.add_row(*(str(v) for v in row.values()))
        wide.print(ab)
        wide.print(f"{test['decision']['sentence']} Status: {test['status']}.", highlight=False)
        links = link_rows(reports[AB_CAMPAIGN], limit=5) if AB_CAMPAIGN in reports else []
        if links:
            table = Table(*links[0], title=f"Most clicked links of {AB_CAMPAIGN}")
            for row in links:
                table.add_row(*(str(v) for v in row.values()))
            wide.print(table)
    for name in ("wakeup", "abandoned_cart", "new_arrivals"):
        mails = load_mails(state, name, since, until)
        if name in reports and (mails["group"] == "holdout").any():
            orders = load_orders(shop, mails["customer_id"], since, until + timedelta(days=7))
            result = measure(name, mails, orders, since, until, 7)
            wide.print(
                f"{name}: revenue after a click {money(reports[name].total.revenue_after_click)}; holdout "
                f"uplift: conversion {pct(result.mailed.conversion, 2)} mailed vs "
                f"{pct(result.holdout.conversion, 2)} held out, incremental revenue "
                f"{money(result.incremental_revenue)}.",
                highlight=False,
            )
            break
    wide.print(which_is_which(7), highlight=False)
    wide.print("More: `shopmail report <campaign>`, `shopmail history`, the campaign-results deployment.")


if __name__ == "__main__":  # pragma: no cover
    app()
