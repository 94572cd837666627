"""The whole loop offline: a real campaign run sends through the local SendGrid server, whose
recipients open, click the mails' real links, bounce, unsubscribe and report spam; its signed
webhook (late, duplicated, out of order) reaches the real feedback app; the report counts exactly
what the server's recipients did."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from config.settings import Settings, get_settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.local_loop import local_loop
from shopmail.devtools.sink_engagement import EngagementConfig, Rates
from shopmail.devtools.sink_webhook import WebhookConfig
from shopmail.results.engagement import count_engagement, count_links, split_link
from shopmail.state import state_db
from shopmail.state.engagement import settle_sent
from shopmail.state.schema import mail_results, provider_events

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)
RATES = Rates(
    bounce_hard=0.04,
    bounce_soft=0.03,
    blocked=0.03,
    deferred=0.1,
    open=0.5,
    machine=0.3,
    click=0.3,
    unsubscribe=0.05,
    spam=0.03,
)


def test_report_counts_exactly_what_the_servers_recipients_did(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.campaign import campaign_flow

    generate_demo_shop(settings.shop_url_resolved, customers=9000, seed=5, today=AS_OF)
    state = state_db.upgrade(settings.state_url_resolved)
    engagement = EngagementConfig(enabled=True, default=RATES, open_delay_s=0.3, click_delay_s=0.3, seed=11)
    webhook = WebhookConfig(delay_s=0.1, jitter_s=1.5, duplicate_rate=0.3, seed=2)
    with local_loop(settings, state, engagement, webhook) as loop:
        for key, value in loop.env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        report = campaign_flow(campaign="wakeup", as_of=AS_OF)
        sent = report.counts()["sent"]
        assert sent > 100
        loop.drain()
        truth = loop.truth()
        unsubscribes_posted = loop.sink.store.webhook.unsubscribes
        duplicates = loop.sink.store.webhook.duplicates

    (group,) = truth["groups"]
    assert group["campaign"] == "wakeup" and group["sent"] == sent
    since = state_db.utcnow() - timedelta(hours=1)
    settle_sent(state, "wakeup", since)  # the ledger's time of `sent` onto each mail (the run did it)
    with state.connect() as conn:
        settled = conn.execute(select(func.count(mail_results.c.sent_at))).scalar_one()
    assert settled == sent
    (total,) = count_engagement(state, "wakeup", since, since + timedelta(hours=2))
    assert total.sent == sent
    assert total.delivered == group["delivered"]
    assert total.deferred == group.get("deferred", 0)
    assert total.hard_bounces == group.get("hard_bounce", 0) > 0
    assert total.soft_bounces == group.get("soft_bounce", 0) > 0
    assert total.blocked == group.get("blocked", 0) > 0
    assert total.machine_opened == group["machine_open"] > 0
    assert total.opened == group["open"] > 0  # people only: machine opens left out
    assert total.clicked == group["click"] > 0
    assert total.spam_reports == group.get("spam", 0) > 0
    assert total.unsubscribed == group.get("unsubscribe", 0) == unsubscribes_posted > 0

    # per link: the clicks the server's recipients made, link by link (button and page)
    expected: Counter = Counter()
    expected_mails: Counter = Counter()
    for link in truth["links"]:
        expected[split_link(link["url"])] += link["clicks"]
        expected_mails[split_link(link["url"])] += link["mails"]
    links = count_links(state, "wakeup", since, since + timedelta(hours=2))
    assert {(link.place, link.page): link.clicks for link in links} == dict(expected)
    assert {(link.place, link.page): link.mails for link in links} == dict(expected_mails)
    assert {link.place for link in links} >= {"cta"}  # the mail's real buttons and blocks
    assert duplicates > 0  # the stream really was duplicated (and jittered: reordered)
    with state.connect() as conn:
        stored = conn.execute(provider_events.select()).all()
    assert len({r.sg_event_id for r in stored}) == len(stored)
    assert all(r.url is None or "token=" not in r.url for r in stored)
    assert get_engine(settings.shop_url_resolved)  # the shop was read, not written

    # where a marketer reads it: the campaign-results flow's artifacts, `shopmail report`, `shopmail history`
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from rich.console import Console
    from typer.testing import CliRunner

    from flows.campaign_results import campaign_results
    from shopmail import cli

    shown = campaign_results(campaign="wakeup", group_by="language")
    assert shown["rows"][-1]["clicked"] == total.clicked and shown["rows"][-1]["sent"] == sent
    keys = ["results-wakeup", "results-wakeup-mails", "results-wakeup-links", "history-wakeup"]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    by_key = {a.key: a for a in found}
    assert set(by_key) == set(keys)
    text = by_key["results-wakeup"].data
    assert f"{sent:,} mails sent" in text and "what the mails caused" in text and "machine opens" in text
    assert "data:image/svg+xml;base64," in text and "Links clicked" in text
    monkeypatch.setattr(cli, "console", Console(width=250))
    out = CliRunner().invoke(cli.app, ["report", "wakeup"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert (
        "click rate" in out.output and "Links clicked" in out.output and "Revenue after click" in out.output
    )
    history = CliRunner().invoke(cli.app, ["history", "wakeup"], catch_exceptions=False)
    assert f"{total.clicked} (" in history.output and f"{total.delivered:,}" in history.output
