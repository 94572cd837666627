"""The `shopmail` command line."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from config.settings import get_settings  # noqa: E402
from shopmail.db import safe_url  # noqa: E402

app = typer.Typer(
    help="Shopmail: email marketing automation for online shops.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
console = Console()


@app.callback()
def _prepare() -> None:
    """Create the local data folder (demo shop, state DB, outbox) if needed. Without a Prefect
    server (PREFECT_API_URL), runs use a temporary one whose database lives in the data folder."""
    data_dir = get_settings().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = str(data_dir.resolve() / "prefect")


AsOf = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="Day to run for (shop time zone)."),
]


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


@app.command("demo-data")
def demo_data(
    customers: Annotated[int, typer.Option(min=10, help="How many customers.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same shop).")] = 42,
    today: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="The shop's 'today' (default: today)."),
    ] = None,
) -> None:
    """Generate the demo shop database (the embedded default, or SHOPMAIL_SHOP_DB_URL)."""
    from shopmail.devtools.demo_shop import generate_demo_shop

    settings = get_settings()
    url = settings.shop_url_resolved
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

        counts = generate_demo_shop(url, customers=customers, seed=seed, today=_day(today), progress=report)
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
    from shopmail.campaigns import get_campaign

    get_campaign(campaign)  # clear error for an unknown name
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

    reports = service_poller(dry_run=dry_run)
    if not reports:
        console.print("No service mails due.")
    for report in reports.values():
        _print_report(report)


@app.command()
def campaigns() -> None:
    """List the campaigns of the registry."""
    from shopmail.campaigns import registry

    table = Table("name", "kind", "schedule", "marketing", "title")
    for c in registry().values():
        table.add_row(c.name, c.kind, c.schedule or "-", "yes" if c.marketing else "no", c.title)
    console.print(table)


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

    catalogue = load_segments()
    if list_segments or name is None:
        table = Table("name", "title", "reads", "description", title="Segments (config/segments.toml)")
        for n in catalogue.names():
            s = catalogue.get(n)
            table.add_row(n, s.title, ", ".join(catalogue.fields(n)), s.description)
        console.print(table)
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
        console.print(f"Wrote {write} (work pool '{pool}'); deploy with `prefect deploy --all`.")
        return
    tz = get_settings().timezone
    table = Table("deployment", "schedule", "parameters", "tags", title=f"Deployments (cron in {tz})")
    for spec in deployment_specs():
        params = ", ".join(f"{k}={v}" for k, v in spec.parameters.items())
        table.add_row(spec.name, spec.cron or "manual", params, ", ".join(spec.tags))
    console.print(table)


@app.command()
def serve() -> None:
    """Serve every deployment from this process (needs a Prefect server: PREFECT_API_URL)."""
    from prefect import serve as prefect_serve

    from flows.deploy import runner_deployments

    if not os.environ.get("PREFECT_API_URL"):
        console.print("[yellow]PREFECT_API_URL is not set: start `prefect server start` and export it.[/]")
    prefect_serve(*runner_deployments(), limit=get_settings().workers * 2)


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
) -> None:
    """Run the local SendGrid-compatible server (mails at http://HOST:PORT/sink)."""
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
    console.print(f"SendGrid sink on http://{host}:{port} (mails: /sink; set SHOPMAIL_SENDGRID_HOST)")
    serve(host=host, port=port, api_key=api_key, faults=faults)


@app.command("feedback-app")
def feedback_app(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8030,
) -> None:
    """Run the one-click unsubscribe endpoint and the SendGrid event webhook."""
    from shopmail.web.feedback_app import serve

    console.print(f"Feedback app on http://{host}:{port} (/unsubscribe, /sendgrid/events)")
    serve(get_settings(), host=host, port=port)


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


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=10, help="Demo shop size.")] = 5000,
    as_of: AsOf = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Select and render only.")] = False,
) -> None:
    """Run a whole day's schedule (every campaign due that day) on the demo shop into the outbox."""
    from flows.daily_schedule import daily_schedule

    settings = get_settings()
    day = _day(as_of) or datetime.now(settings.tz).date()
    if settings.shop_db_url is None:
        _ensure_demo_shop(day, customers)
    results = daily_schedule(as_of=day, dry_run=dry_run, preapproved=True)
    _print_day(day, results)
    outbox = settings.outbox_path
    if settings.mail_provider == "outbox" and outbox.exists():
        files = sorted(outbox.glob("*.eml"))
        console.print(f"{len(files)} mail(s) in {outbox}; e.g. {files[0] if files else '-'}")


if __name__ == "__main__":  # pragma: no cover
    app()
