"""Series-trial flow: a series tried on one test customer from the Prefect UI's form. Every step's
mail, as that customer would get it for their latest occasion (a cart, a registration, a delivered
order), is shown in an artifact with the moment it would fall due and, when a test address is given,
sent there at once with "[Test n/N]" in the subject. Nothing is recorded for the customer: their real
series goes on as if the trial never happened."""

from __future__ import annotations

from datetime import UTC, date
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field, WithJsonSchema

from config.settings import get_settings
from flows.campaign import today_in_shop
from flows.forms import DATE_FIELD, bounded_int, campaign_id, campaign_name_for_run, series_dropdown
from shopmail.mailer.base import SendStatus, is_valid_email
from shopmail.mailer.factory import make_sender
from shopmail.run.series_trial import SeriesTrial, as_test_mail, series_trial
from tasks.record import artifact_key, mail_markdown, save_mail_html

EMAIL_FIELD = WithJsonSchema({"type": "string", "format": "email", "title": "Send to (test address)"})


def _run_name() -> str:
    params = flow_run.parameters
    day = params.get("as_of") or today_in_shop()
    return f"series-trial-{campaign_name_for_run(params)}-customer-{params.get('customer_id')}-{day}"


def _shop_time(moment) -> str:
    return moment.replace(tzinfo=UTC).astimezone(get_settings().tz).strftime("%Y-%m-%d %H:%M")


def trial_markdown(trial: SeriesTrial, heading: str, sent: dict[int, str], run_id: str) -> str:
    """The trial as Markdown: the entry, then each step: when it would go, what was done with it, the
    mail (subject, HTML link, text)."""
    entered = _shop_time(trial.entered_at) if trial.entered_at else "?"
    lines = [f"# {heading}", "", f"Entry: `{trial.entry_key}`, entered {entered} shop time.", ""]
    for step in trial.steps:
        lines += [f"## {step.label}: due {_shop_time(step.due_at)} shop time", ""]
        if step.mail is None:
            lines += [f"Not sent to this customer: {step.reason}.", ""]
            continue
        lines += [sent.get(step.number, "Shown only (no test address given)."), ""]
        html = save_mail_html(step.mail, f"trial-{trial.campaign}-{run_id}-step{step.number}")
        lines += [mail_markdown(step.mail, "The mail", html, level=3), ""]
    lines += ["Nothing was recorded for the customer: their real series is not changed by this trial."]
    return "\n".join(lines)


@flow(name="series-trial", flow_run_name=_run_name, log_prints=True)
def series_trial_flow(
    campaign: Annotated[str, series_dropdown()],
    customer_id: Annotated[int, Field(ge=1), bounded_int(1, 2**63 - 1)],
    send_to: Annotated[str | None, EMAIL_FIELD] = None,
    as_of: Annotated[date | None, DATE_FIELD] = None,
) -> str:
    """Try a series on a test customer: every step's mail now, nothing recorded for the customer.

    Args:
        campaign: The series to try.
        customer_id: The test customer (their id in the shop), with an occasion of the series: a cart,
            a registration, a delivered order.
        send_to: Send every step's mail to this address now ("[Test 1/3]" in the subject); empty =
            only show them.
        as_of: The shop day to look for the customer's occasion up to; empty = today.
    """
    name, day = campaign_id(campaign), as_of or today_in_shop()
    if send_to and not is_valid_email(send_to):
        raise ValueError(f"the test address {send_to!r} is not an e-mail address")
    trial = series_trial(name, customer_id, day)
    heading = f"Series {name} tried on customer {customer_id} ({day.isoformat()})"
    key = artifact_key("series-trial", name)
    if trial.reason:
        text = f"{heading}: no trial: {trial.reason}."
        create_markdown_artifact(markdown=f"# {heading}\n\n{text}", key=key, description=heading)
        get_run_logger().info("%s", text)
        return text
    run_id = str(flow_run.id)
    sent: dict[int, str] = {}
    mails = [s for s in trial.steps if s.mail is not None]
    if send_to and mails:
        test_mails = [as_test_mail(s.mail, send_to, s, len(trial.steps), run_id) for s in mails]
        with make_sender(get_settings()) as sender:
            results = sender.send_batch(test_mails)
        for step, result in zip(mails, results, strict=True):
            ok = result.status is SendStatus.sent
            sent[step.number] = (
                "Sent to the test address." if ok else f"Not sent to the test address: {result.error}."
            )
    markdown = trial_markdown(trial, heading, sent, run_id)
    create_markdown_artifact(markdown=markdown, key=key, description=heading)
    done = sum(1 for v in sent.values() if v.startswith("Sent"))
    summary = f"{heading}: {len(mails)} of {len(trial.steps)} steps' mails" + (
        f", {done} sent to the test address" if send_to else " shown"
    )
    get_run_logger().info("%s", summary)
    return summary
