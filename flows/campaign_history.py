"""Campaign history flow: the last runs of a campaign side by side, as a Prefect table artifact."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import Field
from sqlalchemy import Engine

from config.settings import get_settings
from flows.forms import bounded_int, campaign_dropdown, campaign_id
from shopmail.results.engagement import engagement_of_runs
from shopmail.results.results_text import pct
from shopmail.run.vocabulary import words
from shopmail.state import state_db
from tasks.record import artifact_key


def _run_name() -> str:
    params = flow_run.parameters
    try:
        return f"history-{campaign_id(params.get('campaign'))}"
    except ValueError:
        return f"history-{params.get('campaign')}"


def history_rows(runs: list[dict[str, Any]], engaged: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per run, in the words of the artifact's columns (with `engaged`, run id -> its mails'
    `Engagement`: delivered, opened by people, clicked)."""
    engaged = engaged or {}
    rows = []
    for r in runs:
        e = engaged.get(r["run_id"])
        details = r.get("details") or {}
        outcomes = details.get("outcomes") or {}
        rows.append(
            {
                "started (UTC)": f"{r['started_at']:%Y-%m-%d %H:%M}",
                "shop day": str(r["as_of"]),
                "mode": "dry run" if r["dry_run"] else "send",
                "status": words(r["status"], "status"),
                "segment": details.get("segment") or "-",
                "audience": r["audience"],
                "eligible": details.get("eligible", "-"),
                "sent": r["sent"],
                "would send": outcomes.get("would_send", "-") if r["dry_run"] else "-",
                "skipped": r["skipped"],
                "failed": r["failed"],
                "why nothing": details.get("zero_reason") or "-",
                "delivered": "-" if e is None else e.delivered,
                "open rate (people)": "-" if e is None else pct(e.open_rate),
                "click rate": "-" if e is None else pct(e.click_rate, 2),
            }
        )
    return rows


@flow(name="campaign-history", flow_run_name=_run_name, log_prints=True)
def campaign_history(
    campaign: Annotated[str, campaign_dropdown()],
    runs: Annotated[int, Field(ge=1, le=100), bounded_int(1, 100)] = 10,
) -> list[dict[str, Any]]:
    """The last runs of a campaign side by side: day, mode, status, segment, counts.

    Args:
        campaign: The campaign.
        runs: How many of its latest runs to compare.
    """
    name = campaign_id(campaign)
    state = state_db.upgrade(get_settings().state_url_resolved)
    rows = publish_history(state, name, runs)
    get_run_logger().info("History of %s: %d runs compared.", name, len(rows))
    return rows


def publish_history(state: Engine, campaign: str, runs: int = 10) -> list[dict[str, Any]]:
    """The table artifact `history-<campaign>`: its last `runs` runs with what their mails did so far
    (also published by every sending run of the campaign)."""
    recent = state_db.recent_runs(state, campaign, runs)
    rows = history_rows(recent, engagement_of_runs(state, [r["run_id"] for r in recent]))
    create_table_artifact(
        table=rows,
        key=artifact_key("history", campaign),
        description=f"The last {len(rows)} runs of {campaign}",
    )
    return rows
