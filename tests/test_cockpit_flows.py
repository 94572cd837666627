"""The CLI's tools as flows for the Prefect UI (mail-preview, segment-size, why-mail, campaign-history):
each takes what the form passes (titles from the dropdowns) and publishes a readable artifact."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.web.feedback_app import running_feedback_app
from tests.conftest import FEEDBACK_ORIGIN

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,  # the latest version of the key first
            )

    found = asyncio.run(read())
    assert found, key
    return str(found[0].data)


def _links(markdown: str) -> list[str]:
    return re.findall(r"\(\s*(" + re.escape(FEEDBACK_ORIGIN) + r"/preview/[^)\s]+)\)", markdown)


def _local(link: str, base: str) -> str:
    """The artifact's public link, asked of the feedback app running on this machine."""
    return base + link.removeprefix(FEEDBACK_ORIGIN)


def test_cockpit_flows_answer_in_artifacts(prefect_harness, settings: Settings) -> None:
    from flows.campaign import campaign_flow
    from flows.campaign_history import campaign_history
    from flows.mail_preview import mail_preview
    from flows.segment_size import segment_size
    from flows.why_mail import why_mail

    generate_demo_shop(settings.shop_url_resolved, customers=800, seed=7, today=AS_OF)
    report = campaign_flow(campaign="wakeup", as_of=AS_OF, dry_run=True)
    customer = int(report.sample.custom_args["customer_id"]) if report.sample.custom_args else None
    assert customer

    subject = mail_preview(
        campaign="Будильник: 7 и 14 дней после доставки", customer_id=customer, as_of=AS_OF
    )
    preview = _artifact("preview-wakeup")
    assert (
        subject in preview
        and f"**HTML version:** [open the mail]({FEEDBACK_ORIGIN}/preview/" in preview
        and "token=" not in preview.replace("token=…", "")
    )
    html_path = preview.split("; file `")[1].split("`")[0]
    assert "<script" not in Path(html_path).read_text(encoding="utf-8").lower()
    with running_feedback_app(settings) as app:  # the artifact's link opens the saved HTML
        shown = httpx.get(_local(_links(preview)[0], app.url), timeout=10)
        assert shown.status_code == 200 and shown.text == Path(html_path).read_text(encoding="utf-8")
        assert shown.headers["content-security-policy"].startswith("default-src 'none'")

        # the campaign run's sample mail carries the link too
        mail = _artifact("mail-wakeup")
        assert httpx.get(_local(_links(mail)[0], app.url), timeout=10).status_code == 200
        assert "/preview/" in _artifact("campaign-wakeup")

        # a segment instead of a customer: a sample of its customers who would get the mail
        summary = mail_preview(campaign="wakeup", segment="Женщины", sample=2, as_of=AS_OF)
        sample = _artifact("preview-wakeup")
        assert "sample of segment Женщины (`women`)" in sample and "2 of the" in sample, summary
        assert sample.count("## Customer ") == 2 and sample.count("**Subject:**") == 2
        for link in _links(sample):
            assert httpx.get(_local(link, app.url), timeout=10).status_code == 200
    assert len(_links(sample)) == 2
    with pytest.raises(ValueError, match="either a customer id or a segment"):
        mail_preview.fn(campaign="wakeup", as_of=AS_OF)

    size = segment_size(segment="Женщины", as_of=AS_OF, sample=3)
    assert 0 < size["size"] < size["base"] == 800
    shown = _artifact("segment-women")
    assert "customers in the segment" in shown and "@" not in shown

    text = why_mail(campaign="wakeup", customer_id=customer)
    assert f"Customer {customer}" in text and "In the audience" in text
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", text), text  # the run by its name, never its id
    of_day = why_mail(campaign="wakeup", customer_id=customer, day=AS_OF)
    assert f"the wakeup run for {AS_OF}" in of_day.splitlines()[0] and "In the audience" in of_day
    assert f"Customer {customer}" in _artifact("why-wakeup")

    rows = campaign_history(campaign="wakeup", runs=5)
    assert rows[0]["mode"] == "dry run" and rows[0]["would send"] == report.eligible


def test_data_check_findings_are_logged_as_a_sentence() -> None:
    from flows.steps import findings_sentence
    from shopmail.shop.data_checks import CheckResult, GateReport

    gate = GateReport()
    gate.add(CheckResult("customers", "valid_address", "email", "quarantine", True, 3, 600))
    gate.add(CheckResult("customers", "plausible_age", "birth_date", "unknown", True, 2, 600))
    gate.add(CheckResult("orders", "not_in_future", "created_at", "quarantine", True, 0, 90))
    gate.add(CheckResult("order_items", "references_orders", "order_id", "quarantine", True, 4, 90))
    text = findings_sentence(gate)
    assert text == (
        "Data checks found: in customers, 3 of 600 rows: email must be a valid e-mail address (row set "
        "aside, never mailed); in customers, 2 of 600 rows: birth_date age must be plausible (value "
        "treated as missing); in order_items, 4 of 90 rows: order_id refers to a row missing from orders "
        "(row set aside, never mailed). The run report's data-check table lists every check."
    )
    assert "{" not in text and "created_at" not in text
