"""Record task: run summary in the state DB and Prefect artifacts a marketer can read."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from config.settings import get_settings
from shopmail.run.run_report import RunReport
from shopmail.state import state_db


@task(name="record-run", retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE)
def record_run(report: RunReport, status: str) -> None:
    """Store the run summary and publish it as Prefect artifacts."""
    settings = get_settings()
    state = state_db.upgrade(settings.state_url_resolved)
    state_db.finish_run(state, report.run_id, status, report.counts(), report.details())
    key = f"campaign-{report.campaign.replace('_', '-')}"
    create_markdown_artifact(markdown=report.markdown(status), key=key, description=report.title())
    rows: list[dict[str, Any]] = [{"outcome": k, "count": v} for k, v in report.counts().items()]
    rows += [{"outcome": f"skipped: {k}", "count": v} for k, v in report.skipped.items()]
    create_table_artifact(table=rows, key=f"{key}-counts", description=report.title())
