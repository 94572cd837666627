"""Why-mail flow: why a customer got (or did not get) a campaign's mail: the segment rule traced on
their values at run time and their rows in the send ledger, as a Prefect artifact."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from config.settings import get_settings
from flows.forms import DATE_FIELD, bounded_int, campaign_dropdown, campaign_id, campaign_name_for_run
from shopmail.run.why import explain, latest_run_for, run_of_day
from shopmail.state import state_db
from tasks.record import artifact_key


def _run_name() -> str:
    params = flow_run.parameters
    name = campaign_name_for_run(params)
    day = f"-{params['day']}" if params.get("day") else ""
    return f"why-{name}-customer-{params.get('customer_id')}{day}"


@flow(name="why-mail", flow_run_name=_run_name, log_prints=True)
def why_mail(
    campaign: Annotated[str, campaign_dropdown()],
    customer_id: Annotated[int, Field(ge=1), bounded_int(1, 2**63 - 1)],
    day: Annotated[date | None, DATE_FIELD] = None,
) -> str:
    """Why a customer got (or did not get) a campaign's mail.

    Args:
        campaign: The campaign.
        customer_id: The customer (their id in the shop).
        day: The shop day of the run to explain; empty = the customer's latest mail of the campaign,
            else the campaign's latest run.
    """
    settings = get_settings()
    name = campaign_id(campaign)
    state = state_db.upgrade(settings.state_url_resolved)
    run = run_of_day(state, customer_id, name, day) if day else latest_run_for(state, customer_id, name)
    if not run and not day:
        runs = state_db.recent_runs(state, name, 1)
        run = str(runs[0]["run_id"]) if runs else ""
    heading = f"Why customer {customer_id} and {name}" + (f" on {day}" if day else "")
    if not run:
        when = f" for {day}" if day else ""
        text = f"No run of '{name}'{when} recorded: nothing to explain."
    else:
        text = explain(customer_id, run, data_dir=settings.data_dir, state=state).text()
    create_markdown_artifact(
        markdown=f"# {heading}\n\n```text\n{text}\n```", key=artifact_key("why", name), description=heading
    )
    get_run_logger().info("%s: %s", heading, text.splitlines()[-1] if text else "")
    return text
