"""The campaign flow sending through SendGrid's v3 API to the project's local SendGrid server."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from config.settings import Settings, get_settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.state import state_db
from shopmail.state.schema import send_ledger
from tests.shop_oracle import expected_wakeup

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)


@pytest.fixture
def sendgrid_shop(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    generate_demo_shop(settings.shop_url_resolved, customers=2000, seed=7, today=AS_OF)
    with running_sink() as sink:
        monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "sendgrid")
        monkeypatch.setenv("SHOPMAIL_SENDGRID_HOST", sink.url)
        monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.test-key-not-a-secret")
        monkeypatch.setenv("SHOPMAIL_SENDGRID_BACKOFF_S", "0.01")
        get_settings.cache_clear()
        yield get_settings(), sink


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_mails_reach_sendgrid_with_ids_only_in_custom_args(prefect_harness, sendgrid_shop) -> None:
    from flows.campaign import campaign_flow

    settings, sink = sendgrid_shop
    sink.store.script([503, 500, 503])  # transient faults: retried, nothing lost
    counts = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    received = sink.store.messages
    assert counts["sent"] == len(received) > 0
    assert counts["failed"] == 0

    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(select(send_ledger).where(send_ledger.c.status != "holdout")).all()
    assert {r.provider_message_id for r in rows} == {m.message_id for m in received}

    payload = received[0].payload
    [personalization] = payload["personalizations"]
    args = personalization["custom_args"]
    assert args["campaign"] == "wakeup" and args["occasion"].startswith("wakeup")
    assert set(args) == {"campaign", "occasion", "customer_id", "shopmail_key"}
    assert not any("@" in value for value in args.values())  # ids only, never an address
    assert personalization["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert payload["from"]["email"] == settings.sender_email

    again = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    assert again["sent"] == 0 and len(sink.store.messages) == len(received)


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_bad_api_key_fails_the_run_and_the_next_run_sends_everything(
    prefect_harness, sendgrid_shop, monkeypatch
) -> None:
    from flows.campaign import campaign_flow

    settings, sink = sendgrid_shop
    sink.store.api_key = "SG.the-right-key"
    with pytest.raises(RuntimeError, match="batches failed"):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert sink.store.messages == []
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        statuses = set(conn.execute(select(send_ledger.c.status)).scalars())
    assert statuses == {"failed", "holdout"}  # the holdout is recorded before sending

    monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.the-right-key")
    get_settings.cache_clear()
    counts = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    assert counts["sent"] == len(sink.store.messages) > 0


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_run_pauses_after_too_many_errors_and_the_rerun_finishes(
    prefect_harness, sendgrid_shop, monkeypatch
) -> None:
    from flows.campaign import campaign_flow
    from tasks.send import SendingPaused

    settings, sink = sendgrid_shop
    monkeypatch.setenv("SHOPMAIL_SEND_BATCH_SIZE", "5")
    monkeypatch.setenv("SHOPMAIL_SENDGRID_RETRIES", "0")
    monkeypatch.setenv("SHOPMAIL_SENDGRID_CONCURRENCY", "1")
    monkeypatch.setenv("SHOPMAIL_MAX_SEND_ERRORS", "2")
    get_settings.cache_clear()
    sink.store.script([503] * 3)  # three failed requests: one more than the budget
    with pytest.raises(SendingPaused, match="paused after 3 failed requests"):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    [run] = state_db.recent_runs(state_db.upgrade(settings.state_url_resolved), "wakeup")
    assert run["status"] == "paused" and "rerun" in run["details"]["problem"]
    paused_count = len(sink.store.messages)

    counts = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    received = [
        int(p["custom_args"]["customer_id"])
        for m in sink.store.messages
        for p in m.payload["personalizations"]
    ]
    expected = expected_wakeup(get_engine(settings.shop_url_resolved), AS_OF)
    assert counts["sent"] == counts["eligible"] > 0
    assert len(received) == len(set(received)) == paused_count + counts["sent"]
    assert set(received) == set(expected)
