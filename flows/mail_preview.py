"""Mail preview flow: the mail one customer, or a sample of a segment's customers, would get from a
campaign (nothing sent or recorded), as a Prefect artifact with the subject, the text and a signed
link to the HTML version."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from flows.campaign import today_in_shop
from flows.forms import (
    DATE_FIELD,
    bounded_int,
    campaign_dropdown,
    campaign_id,
    campaign_name_for_run,
    segment_dropdown,
    segment_id,
    segment_titles,
)
from shopmail.run.preview import preview_mail, preview_segment_sample
from tasks.record import artifact_key, mail_markdown, save_mail_html

MAX_SAMPLE = 20  # mails of a segment sample shown in one artifact


def _run_name() -> str:
    params = flow_run.parameters
    name = campaign_name_for_run(params)
    day = params.get("as_of") or today_in_shop()
    if params.get("customer_id") is None and params.get("segment"):
        try:
            chosen = segment_id(params.get("segment"))
        except ValueError:
            chosen = str(params.get("segment"))
        return f"preview-{name}-segment-{chosen}-{day}"
    return f"preview-{name}-customer-{params.get('customer_id')}-{day}"


@flow(name="mail-preview", flow_run_name=_run_name, log_prints=True)
def mail_preview(
    campaign: Annotated[str, campaign_dropdown()],
    customer_id: Annotated[int | None, Field(ge=1), bounded_int(1, 2**63 - 1)] = None,
    as_of: Annotated[date | None, DATE_FIELD] = None,
    segment: Annotated[str | None, segment_dropdown()] = None,
    sample: Annotated[int, Field(ge=1, le=MAX_SAMPLE), bounded_int(1, MAX_SAMPLE)] = 3,
) -> str:
    """Show the mail a customer, or a sample of a segment's customers, would get from a campaign on a
    day; nothing is sent or recorded.

    Args:
        campaign: The campaign whose mail to show.
        customer_id: The customer (their id in the shop); or leave empty and choose a segment.
        as_of: The shop day; empty = today.
        segment: Instead of a customer: show the mails of a sample of this segment's customers who
            would get the campaign's mail.
        sample: With a segment: how many customers' mails to show.
    """
    name, day = campaign_id(campaign), as_of or today_in_shop()
    chosen = segment_id(segment)
    if (customer_id is None) == (chosen is None):
        raise ValueError("give either a customer id or a segment (for a sample of its customers)")
    if chosen is not None:
        return _segment_sample(name, chosen, sample, day)
    result = preview_mail(name, customer_id, day)
    key = artifact_key("preview", name)
    heading = f"{name} for customer {customer_id} on {day.isoformat()}"
    if result.mail is None:
        text = f"Customer {customer_id} gets no '{name}' mail on {day.isoformat()}: {result.reason}."
        create_markdown_artifact(markdown=f"# {heading}\n\n{text}", key=key, description=heading)
        get_run_logger().info("%s", text)
        return text
    html = save_mail_html(result.mail, f"preview-{name}-{customer_id}-{day.isoformat()}")
    create_markdown_artifact(markdown=mail_markdown(result.mail, heading, html), key=key, description=heading)
    get_run_logger().info("%s: subject %r; HTML in %s", heading, result.mail.subject, html)
    return result.mail.subject


def _segment_sample(name: str, segment: str, size: int, day: date) -> str:
    """The artifact for a sample of a segment: each customer's subject, link to the HTML, text."""
    title = segment_titles().get(segment, segment)
    heading = f"{name} for a sample of segment {title} (`{segment}`) on {day.isoformat()}"
    shown = preview_segment_sample(name, segment, size, day)
    key = artifact_key("preview", name)
    if not shown.mails:
        text = f"No '{name}' mail for segment {title} on {day.isoformat()}: {shown.reason}."
        create_markdown_artifact(markdown=f"# {heading}\n\n{text}", key=key, description=heading)
        get_run_logger().info("%s", text)
        return text
    lines = [
        f"# {heading}",
        "",
        f"{len(shown.mails)} of the {shown.eligible:,} customers of the segment who would get this mail.",
    ]
    for customer, mail in shown.mails:
        html = save_mail_html(mail, f"preview-{name}-{segment}-{customer}-{day.isoformat()}")
        lines += ["", mail_markdown(mail, f"Customer {customer}", html, level=2)]
    create_markdown_artifact(markdown="\n".join(lines), key=key, description=heading)
    summary = f"{heading}: {len(shown.mails)} of {shown.eligible:,} eligible customers shown"
    get_run_logger().info("%s", summary)
    return summary
