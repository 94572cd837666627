"""Campaign results flow: what a campaign's mails did in a period, per variant (or language, segment,
run, A/B phase) and per link, with revenue after click next to the holdout uplift; Prefect artifacts
(Markdown with a chart, tables) and an SVG chart."""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from pydantic import Field, WithJsonSchema

from config.settings import get_settings
from flows.campaign import today_in_shop
from flows.forms import DATE_FIELD, bounded_int, campaign_dropdown, campaign_id, campaign_name_for_run
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.mail.links import unsubscribe_prefix
from shopmail.results.attribution import campaign_result, default_period
from shopmail.results.engagement import DIMENSION_WORDS, report_for_days
from shopmail.results.results_text import chart_svg, engagement_rows, link_rows, markdown, save_chart
from shopmail.state import state_db
from tasks.record import artifact_key

GROUPS = {words: name for name, words in DIMENSION_WORDS.items()}  # "A/B phase" -> test_phase


def _run_name() -> str:
    params = flow_run.parameters
    return f"results-{campaign_name_for_run(params)}-{params.get('until') or 'today'}"


def chart_markdown(svg: str) -> str:
    """The chart inline (a data: image the UI renders without fetching anything)."""
    return f"![chart](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


@flow(name="campaign-results", flow_run_name=_run_name, log_prints=True)
def campaign_results(
    campaign: Annotated[str, campaign_dropdown()],
    since: Annotated[date | None, DATE_FIELD] = None,
    until: Annotated[date | None, DATE_FIELD] = None,
    window_days: Annotated[int, Field(ge=1, le=90), bounded_int(1, 90)] = 7,
    group_by: Annotated[str, WithJsonSchema({"type": "string", "enum": list(GROUPS)})] = "variant",
    with_machine_opens: bool = False,
) -> dict[str, Any]:
    """What a campaign's mails did: delivered, bounced, opened, clicked (per link), unsubscribed,
    spam reports, orders and revenue after a click; the holdout uplift beside it.

    Args:
        campaign: The campaign.
        since: First shop day of mails to count; empty = 30 days before `until`.
        until: Last shop day of mails to count (inclusive); empty = today.
        window_days: An order counts when placed within this many days after a click (and, for the
            holdout uplift, after the mail).
        group_by: One row per variant, language, segment, run or A/B phase.
        with_machine_opens: Count machine opens (Apple Mail Privacy Protection) as opens: open rates
            then overstate people.
    """
    settings = get_settings()
    spec = get_campaign(campaign_id(campaign))
    by = GROUPS.get(str(group_by), str(group_by))
    first, last = default_period(today_in_shop(), since, until)
    state = state_db.upgrade(settings.state_url_resolved)
    shop = get_engine(settings.shop_url_resolved)
    report = report_for_days(
        state,
        shop,
        spec.name,
        first,
        last,
        settings.tz,
        by=(by,),
        window_days=window_days,
        unsubscribe_prefix=unsubscribe_prefix(settings.unsubscribe_url),
        with_machine_opens=with_machine_opens,
    )
    holdout = campaign_result(state, shop, spec.name, first, last, settings.tz, window_days)
    svg = chart_svg(report)
    path = save_chart(report, settings.data_dir / "reports" / f"results-{spec.name}-{last.isoformat()}.svg")
    key = artifact_key("results", spec.name)
    create_markdown_artifact(
        markdown=f"{markdown(report, holdout, path)}\n\n{chart_markdown(svg)}",
        key=key,
        description=f"Results of {spec.name}, {first} – {last}",
    )
    create_table_artifact(
        table=engagement_rows(report), key=f"{key}-mails", description=f"{spec.name} per {by}"
    )
    create_table_artifact(table=link_rows(report) or [{"links": "none clicked"}], key=f"{key}-links")
    total = report.total
    get_run_logger().info(
        "%s %s – %s: %d sent, %d delivered, %d opened by people, %d clicked, %d orders after a click; %s",
        spec.name,
        first,
        last,
        total.sent,
        total.delivered,
        total.opened,
        total.clicked,
        total.orders_after_click,
        path,
    )
    return {"rows": engagement_rows(report), "links": link_rows(report), "chart": str(path)}
