"""Segment size flow: how many customers a segment holds, their share of the base, how many may get
marketing mail, and a PII-light sample (no e-mail addresses), as a Prefect artifact."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from config.settings import get_settings
from flows.campaign import today_in_shop
from flows.forms import ALL_SEGMENTS, DATE_FIELD, bounded_int, segment_dropdown, segment_id
from segments.rules import load_segments
from segments.segment_preview import SegmentPreview, preview_segment
from shopmail.db import get_engine
from shopmail.shop.extract import extract
from tasks.record import artifact_key

HISTORY_DAYS = 365  # days of orders the segment features read (as `shopmail segment`)


def _run_name() -> str:
    params = flow_run.parameters
    try:
        name = segment_id(params.get("segment"))
    except ValueError:
        name = str(params.get("segment"))
    return f"segment-{name}-{params.get('as_of') or today_in_shop()}"


def segment_markdown(shown: SegmentPreview, day: date) -> str:
    """The segment as the marketer reads it: size, share, consent, rule, sample."""
    lines = [
        f"# Segment {shown.title} (`{shown.name}`) on {day.isoformat()}",
        "",
        shown.description,
        "",
        "| measure | value |",
        "|---|---:|",
        f"| customers in the segment | {shown.size:,} |",
        f"| share of all {shown.base:,} customers | {shown.share:.1%} |",
        f"| with marketing consent | {shown.subscribed:,} |",
        "",
        "## Rule",
        "",
        "```text",
        *shown.definition,
        "```",
    ]
    if len(shown.sample):
        lines += ["", f"## Sample of {len(shown.sample)} (no addresses)", ""]
        lines += ["| id | first name | city | spend | RFM |", "|---:|---|---|---:|---|"]
        for r in shown.sample.to_dict("records"):
            spend = r["total_spend"]
            spend_text = "-" if spend is None or spend != spend else f"{spend:,.0f}"
            city = r["city"] if isinstance(r["city"], str) else "-"
            cells = [r["customer_id"], r["first_name"] or "-", city, spend_text, r["rfm_label"] or "-"]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


@flow(name="segment-size", flow_run_name=_run_name, log_prints=True)
def segment_size(
    segment: Annotated[str, segment_dropdown(include_all=False)],
    as_of: Annotated[date | None, DATE_FIELD] = None,
    sample: Annotated[int, Field(ge=0, le=100), bounded_int(0, 100)] = 10,
) -> dict[str, int | float]:
    """How big a segment is today: customers, share of the base, marketing consent, a sample.

    Args:
        segment: The segment to measure.
        as_of: The shop day; empty = today.
        sample: How many members to show (first name, city, spend; never an address).
    """
    name = segment_id(segment)
    if name in (None, ALL_SEGMENTS):
        raise ValueError("choose a segment: 'all' is the whole audience of a campaign, not a segment")
    settings = get_settings()
    day = as_of or today_in_shop()
    frames = extract(
        get_engine(settings.shop_url_resolved), load_segments().datasets(name), day, settings.tz, HISTORY_DAYS
    )
    shown = preview_segment(name, frames, day, settings.tz, sample)
    create_markdown_artifact(
        markdown=segment_markdown(shown, day), key=artifact_key("segment", name), description=shown.title
    )
    get_run_logger().info(
        "Segment %s on %s: %s of %s customers (%.1f%%), %s with marketing consent.",
        shown.title,
        day.isoformat(),
        f"{shown.size:,}",
        f"{shown.base:,}",
        100 * shown.share,
        f"{shown.subscribed:,}",
    )
    return {"size": shown.size, "base": shown.base, "share": shown.share, "subscribed": shown.subscribed}
