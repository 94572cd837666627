"""Campaign report flow: mailed vs holdout uplift of one campaign, as a Prefect artifact + SVG chart."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from config.settings import get_settings
from flows.campaign import today_in_shop
from flows.forms import DATE_FIELD, campaign_dropdown, campaign_id, campaign_name_for_run
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.results.attribution import CampaignResult, campaign_result, default_period
from shopmail.results.report_chart import default_chart_path, save_chart
from shopmail.state import state_db


def artifact_key(campaign: str) -> str:
    """Prefect artifact keys allow lower-case letters, digits and dashes only."""
    return f"report-{campaign.replace('_', '-')}"


def _run_name() -> str:
    params = flow_run.parameters
    name = campaign_name_for_run(params)
    return f"report-{name}-{params.get('until') or 'today'}"


@flow(name="campaign-report", flow_run_name=_run_name, log_prints=True)
def campaign_report(
    campaign: Annotated[str, campaign_dropdown(marketing_only=True)],
    since: Annotated[date | None, DATE_FIELD] = None,
    until: Annotated[date | None, DATE_FIELD] = None,
    window_days: Annotated[int, Field(ge=1, le=90)] = 7,
) -> CampaignResult:
    """Measure a campaign: orders after the mail, mailed vs random holdout, uplift and p-value.

    Args:
        campaign: The campaign to measure (one with `holdout_percent` set has a holdout group).
        since: First shop day of mails to count; empty = 30 days before `until`.
        until: Last shop day of mails to count (inclusive); empty = today.
        window_days: An order counts when created within this many days after the mail.
    """
    settings = get_settings()
    spec = get_campaign(campaign_id(campaign))
    first, last = default_period(today_in_shop(), since, until)
    state = state_db.upgrade(settings.state_url_resolved)
    shop = get_engine(settings.shop_url_resolved)
    result = campaign_result(state, shop, spec.name, first, last, settings.tz, window_days)
    chart = save_chart(result, default_chart_path(settings.data_dir, spec.name, last))
    create_markdown_artifact(
        markdown=f"{result.markdown()}\n\nChart: `{chart}`",
        key=artifact_key(spec.name),
        description=result.title(),
    )
    get_run_logger().info("%s; chart %s", result.title(), chart)
    return result
