"""Every zero explained: a run that would send (or sent) nothing says why in one sentence, in its
report, its run summary (`shopmail history`) and its last log line (shopmail/run/zero_reason.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import date

import pytest

from config.settings import Settings
from segments.audiences.empty_reasons import audience_empty_reason
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.vocabulary import snake_codes
from shopmail.run.zero_reason import zero_reason
from shopmail.state import state_db

DAY = date(2026, 12, 7)  # config/campaigns/sale.toml: the sale's last day is 2026-11-30


def test_each_kind_of_zero_has_its_sentence() -> None:
    ended = audience_empty_reason("sale", {"ends_on": "2026-11-30"}, DAY)
    assert zero_reason(audience=0, skipped={}, empty=ended, lang="en").startswith(
        "Nothing to send: the sale ended on 2026-11-30"
    )
    birthday = audience_empty_reason("birthday", {}, DAY)
    assert zero_reason(audience=0, skipped={}, empty=birthday, dry_run=False, lang="en") == (
        "Nothing sent: no customer has a birthday on 2026-12-07."
    )
    assert zero_reason(audience=0, skipped={}, empty=birthday, lang="ru") == (
        "Отправлять нечего: 2026-12-07 ни у кого нет дня рождения."
    )
    segment = ("segment_empty", {"audience": "1,200", "segment": "«Женщины»"})
    assert "none of the 1,200 customers of the campaign's audience is in the segment «Женщины»" in (
        zero_reason(audience=0, skipped={}, empty=segment, lang="en")
    )
    assert "everyone in the audience (40) already got this mail" in zero_reason(
        audience=40, skipped={"already_sent": 40}, lang="en"
    )
    assert "all 7 customers are held by the frequency cap" in zero_reason(
        audience=7, skipped={"frequency_cap": 7}, lang="en"
    )
    assert "none of the 3 customers consented to marketing mail" in zero_reason(
        audience=3, skipped={"no_consent": 3}, lang="en"
    )
    mixed = zero_reason(audience=10, skipped={"no_consent": 2, "already_sent": 7}, holdout=1, lang="en")
    assert mixed == (
        "Nothing to send: none of the 10 customers of the audience can get it (already got this mail: 7; "
        "no consent to marketing mail: 2; held out for comparison (gets no mail on purpose): 1)."
    )
    for text in (mixed, zero_reason(audience=5, skipped={"invalid_email": 5}, lang="ru")):
        assert not snake_codes(text)


@pytest.mark.flow
def test_a_dry_run_of_an_ended_sale_says_the_sale_ended(
    prefect_harness, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.campaign import campaign_flow

    generate_demo_shop(settings.shop_url_resolved, customers=300, seed=11, today=DAY)
    with caplog.at_level(logging.INFO):
        report = campaign_flow(campaign="sale", as_of=DAY, dry_run=True)
    why = "Nothing to send: the sale ended on 2026-11-30"
    assert report.would_send() == 0 and report.zero_reason.startswith(why), report.zero_reason

    async def artifacts() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["campaign-sale"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(report.run_id)]),
                )
            )

    markdown = next(a.data for a in asyncio.run(artifacts()) if "Would send" in a.data)
    assert f"**{why}" in markdown
    logged = [r.getMessage() for r in caplog.records if why in r.getMessage()]
    assert logged and all(r.levelno < logging.WARNING for r in caplog.records if why in r.getMessage())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    state = state_db.upgrade(settings.state_url_resolved)
    run = next(r for r in state_db.recent_runs(state, "sale", 5, True) if r["run_id"] == report.run_id)
    assert run["details"]["zero_reason"].startswith(why)

    from shopmail.cli import run_note

    assert run_note(run).startswith(why)
