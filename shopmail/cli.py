"""The `shopmail` command line."""

from __future__ import annotations

import os
import traceback
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import click  # noqa: E402
import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from config.settings import (  # noqa: E402
    DEMO_SHOP_FILE,
    DemoSettingsError,
    MailProvider,
    Settings,
    get_settings,
    require_production_settings,
)
from shopmail.db import private_dir, safe_url  # noqa: E402
from shopmail.redaction import install_log_redaction, redact  # noqa: E402
from shopmail.run.errors import Context, explain, unexpected  # noqa: E402


class CliFailure(SystemExit):
    """Exit with `code` after printing `message`; `str()` is the message (for tests and callers)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _error_context() -> Context:
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
    explained = explain(exc, _error_context())
    message = explained.message if explained else unexpected(exc)
    if debug:
        typer.echo(redact("".join(traceback.format_exception(exc))), err=True)
    typer.echo(message, err=True)
    return CliFailure(message, explained.exit_code if explained else 1)


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


@app.callback()
def _prepare(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of a failure (or SHOPMAIL_DEBUG=1).")
    ] = False,
) -> None:
    """Create the local data folder (demo shop, state DB, outbox) if needed. Without a Prefect
    server (PREFECT_API_URL), runs use a temporary one whose database lives in the data folder."""
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


def _refuse_demo_settings(settings: Settings, purpose: str, *, sender: bool = False) -> None:
    """Exit with the reason and the fix when `purpose` would start with a shipped demo value."""
    try:
        require_production_settings(settings, purpose, sender=sender)
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
    """SendGrid sends to real people: refuse the demo secrets and From address before any work."""
    if settings.mail_provider == MailProvider.sendgrid and not dry_run:
        _refuse_demo_settings(settings, "sending through SendGrid", sender=True)


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
    table = Table("measure", "count", title=report.title())
    for name, value in report.counts().items():
        table.add_row(name, f"{value:,}")
    for reason, value in sorted(report.skipped.items()):
        table.add_row(f"  skipped: {reason}", f"{value:,}")
    for variant, value in sorted(report.variants.items()):
        table.add_row(f"  variant: {variant}", f"{value:,}")
    console.print(table)


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
) -> None:
    """Run one campaign now through the Prefect flow."""
    from flows.campaign import configured_campaign_flow
    from shopmail.campaigns import get_campaign, require_enabled

    require_enabled(get_campaign(campaign))  # clear error for an unknown or disabled campaign
    _refuse_demo_sending(get_settings(), dry_run)
    report = configured_campaign_flow()(
        campaign=campaign,
        as_of=_day(as_of),
        dry_run=dry_run,
        limit=limit,
        segment=segment,
        preapproved=yes,
    )
    _print_report(report)
    settings = get_settings()
    if settings.mail_provider == "outbox" and not dry_run:
        console.print(f"Outbox: {settings.outbox_path}")


@app.command()
def poll(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Select and render only.")] = False,
) -> None:
    """Run the service-mail poller once (what its deployment does every 5 minutes)."""
    from flows.service_poller import service_poller

    _refuse_demo_sending(get_settings(), dry_run)
    reports = service_poller(dry_run=dry_run)
    if not reports:
        console.print("No service mails due.")
    for report in reports.values():
        _print_report(report)


@app.command()
def campaigns() -> None:
    """List the campaigns of the registry."""
    from shopmail.campaigns import broken_campaigns, disabled_reason, registry

    settings = get_settings()
    table = Table("name", "kind", "schedule", "marketing", "enabled", "title")
    for c in registry().values():
        off = disabled_reason(c, settings.disabled_campaigns, settings.enabled_campaigns)
        enabled = f"[yellow]no[/]: {off}" if off else "yes"
        table.add_row(c.name, c.kind, c.schedule or "-", "yes" if c.marketing else "no", enabled, c.title)
    broken = broken_campaigns()
    for name in broken:
        table.add_row(name, "[red]broken[/]", "-", "-", "no", "disabled: see below")
    console.print(table)
    for name, reason in broken.items():
        console.print(f"[red]{name}[/] is disabled (the other campaigns run): {reason}", highlight=False)


@app.command("check-shop")
def check_shop_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check the shop database against the data contract and tell which campaigns can run.

    Exit code 1 when an enabled campaign cannot run with this data."""
    import json

    from shopmail.campaigns import is_enabled, registry
    from shopmail.db import get_engine
    from shopmail.shop.check_shop import check_shop
    from shopmail.state.state_db import utcnow

    settings = get_settings()
    specs = dict(registry())
    enabled = {
        n: is_enabled(c, settings.disabled_campaigns, settings.enabled_campaigns) for n, c in specs.items()
    }
    result = check_shop(
        get_engine(settings.shop_url_resolved),
        specs,
        enabled,
        utcnow(),
        shop=safe_url(settings.shop_url_resolved),
        coupon_table=settings.coupon_target,
        max_order_age_days=settings.max_order_age_days,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        _print_shop_check(result)
    if not result.ok:
        raise typer.Exit(1)


def _print_shop_check(result) -> None:
    """The check-shop result as rich tables: datasets, columns with problems, findings, campaigns."""
    console.print(f"Shop database: {result.shop}  (checked {result.checked_at} UTC)", highlight=False)
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
    verdicts = Table("campaign", "enabled", "can run", "why not", title="Campaigns")
    for c in result.campaigns:
        can = "yes" if c.can_run else ("[red]no[/]" if c.enabled else "no")
        verdicts.add_row(c.name, "yes" if c.enabled else "no", can, "; ".join(c.reasons) or "-")
    console.print(verdicts)
    if result.blocked:
        console.print(
            f"[red]{len(result.blocked)} enabled campaign(s) cannot run[/]: fix the data or disable them"
        )


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
def history(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    idle_polls: Annotated[
        bool, typer.Option("--idle-polls", help="Also service polls that sent nothing.")
    ] = False,
) -> None:
    """Recent runs from the state DB."""
    from shopmail.state import state_db

    state = state_db.upgrade(get_settings().state_url_resolved)
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
    )
    for r in state_db.recent_runs(state, campaign, limit, idle_polls):
        table.add_row(
            f"{r['started_at']:%Y-%m-%d %H:%M}",
            r["campaign"],
            str(r["as_of"]),
            "dry run" if r["dry_run"] else "send",
            r["status"],
            str(r["audience"]),
            str(r["sent"]),
            str(r["skipped"]),
            str(r["failed"]),
            str(r["quarantined"]),
        )
    console.print(table)
    from shopmail.state.coupons import coupons_waiting
    from shopmail.state.ledger import in_doubt_counts

    waiting = coupons_waiting(state, campaign)
    if waiting:  # issued in the shop, mail not sent (failed, in doubt, crashed): the rerun sends them
        listed = ", ".join(f"{name} {count:,}" for name, count in sorted(waiting.items()))
        console.print(f"Coupons waiting for their mail (a rerun sends them): {listed}")
    doubt = in_doubt_counts(state, campaign)
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
) -> None:
    """Measured results: orders after the mail, mailed vs random holdout, uplift and p-value."""
    from datetime import UTC

    from shopmail.campaigns import get_campaign
    from shopmail.db import get_engine
    from shopmail.results.attribution import campaign_result, default_period
    from shopmail.results.report_chart import default_chart_path, save_chart
    from shopmail.state import state_db

    settings = get_settings()
    spec = get_campaign(campaign)
    today = datetime.now(UTC).astimezone(settings.tz).date()
    first, last = default_period(today, _day(since), _day(until))
    if last < first:
        raise typer.BadParameter(f"--until {last} is before --since {first}")
    state = state_db.upgrade(settings.state_url_resolved)
    result = campaign_result(
        state, get_engine(settings.shop_url_resolved), spec.name, first, last, settings.tz, window_days
    )
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
    path = save_chart(result, chart or default_chart_path(settings.data_dir, spec.name, last))
    console.print(f"Chart: {path}")


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
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (the Prefect flow run id).")] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Explain the customer's most recent mail of this campaign.")
    ] = None,
) -> None:
    """Why a customer got (or did not get) a run's mail: segment rule on their values, ledger."""
    from shopmail.run.why import explain, latest_run_for
    from shopmail.state import state_db

    settings = get_settings()
    state = state_db.upgrade(settings.state_url_resolved)
    if run_id is None:
        if campaign is None:
            console.print("[red]Give --run RUN_ID or --campaign NAME.[/]")
            raise typer.Exit(2)
        run_id = latest_run_for(state, customer_id, campaign)
        if run_id is None:
            console.print(f"[yellow]No '{campaign}' mail in the ledger for customer {customer_id}.[/]")
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
    from prefect import serve as prefect_serve

    from flows.deploy import runner_deployments, served_specs, use_quiet_logging

    _refuse_demo_sending(get_settings(), dry_run=False)  # the served runs would mail real people
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[yellow]PREFECT_API_URL is not set: start `prefect server start` and export it.[/]")
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
) -> None:
    """Run a whole day's schedule (every campaign due that day) on the demo shop into the outbox."""
    from flows.daily_schedule import daily_schedule

    settings = get_settings()
    _refuse_demo_sending(settings, dry_run)
    from shopmail.devtools.demo_shop import latest_demo_day

    # default: today, or yesterday before the demo's 06:00 shop time (no demo order in the future)
    day = _day(as_of) or latest_demo_day()
    if settings.shop_db_url is None:
        _ensure_demo_shop(day, customers)
    results = daily_schedule(as_of=day, dry_run=dry_run, preapproved=True)
    _print_day(day, results)
    outbox = settings.outbox_path
    if settings.mail_provider == "outbox" and outbox.exists():
        files = sorted(outbox.glob("*.eml"))
        console.print(f"{len(files)} mail(s) in {outbox}; e.g. {files[0] if files else '-'}")
    failed = failed_campaigns(results)
    if failed:
        typer.echo(
            f"{len(failed)} of {len(results)} campaigns did not complete: {', '.join(failed)} "
            "(reasons above). "
            "Fix them and run the day again: the send ledger sends only what is missing.",
            err=True,
        )
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
