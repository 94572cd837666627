"""1,000 recipients per SendGrid request, over real HTTP to the local SendGrid server.

A mass campaign's mails (the real `sale` templates, demo-shop recipients) share one body, so each
request carries up to 1,000 personalizations with their own substitutions. Its outcome is every
recipient's: accepted -> all sent, refused -> none stored and all rejected, a 5xx -> retried and
stored once, an answer lost after acceptance -> all in doubt, never resent. What the server makes of
each personalization (SendGrid's substitution) is byte for byte the mail rendered for that recipient.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import pytest

from config.settings import Settings
from shopmail.campaigns import get_campaign
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import RunningSink, SinkStore, running_sink
from shopmail.devtools.sink_faults import Faults
from shopmail.mailer.base import OutgoingMail, SendStatus
from shopmail.mailer.sendgrid_api import MAX_SUBSTITUTIONS_PER_REQUEST, SendGridSender, group_for_requests
from shopmail.mailer.throttle import ErrorBudget
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import product_lookup, select_recipients
from shopmail.shop.extract import extract
from shopmail.state import state_db
from tests.test_render_once import _sample

AS_OF = date(2026, 11, 23)
KEY = "SG.mass-requests"


@pytest.fixture(scope="module")
def mass_mails(tmp_path_factory: pytest.TempPathFactory) -> list[OutgoingMail]:
    """2,500 `sale` mails of demo-shop recipients (names of every kind), composed in batches of
    1,000 as the send task does."""
    folder = tmp_path_factory.mktemp("mass")
    settings = Settings(
        shop_db_url=f"sqlite:///{folder / 'shop.sqlite'}",
        state_db_url=f"sqlite:///{folder / 'state.sqlite'}",
        data_dir=folder,
        sender_email="news@mailings.test",
    )
    generate_demo_shop(settings.shop_url_resolved, customers=3000, seed=21, today=AS_OF)
    campaign = get_campaign("sale")
    frames = extract(get_engine(settings.shop_url_resolved), campaign.datasets, AS_OF, settings.tz, 365)
    state = state_db.upgrade(settings.state_url_resolved)
    eligible = select_recipients(campaign, frames, AS_OF, settings, state, set()).eligible
    rows = _sample("sale", eligible, frames["customers"])
    rows = [dict(r) for r in (rows * 3)[:2500]]
    for n, row in enumerate(rows):  # distinct recipients: each its own key and address
        row.update(message_key=f"{row['message_key'][:30]}{n:010d}", email=f"r{n}@mailings.test")
    composer = MailComposer(campaign, settings, product_lookup(frames["products"]))
    mails = [m for i in range(0, len(rows), 1000) for m in composer.compose_many(rows[i : i + 1000])[0]]
    assert composer.stats["shared"] >= 0.95 * len(mails)
    return mails


@pytest.fixture
def sink() -> Iterator[RunningSink]:
    with running_sink(SinkStore(api_key=KEY)) as running:
        yield running


def _sender(sink: RunningSink) -> SendGridSender:
    return SendGridSender(KEY, sink.url, backoff_base_s=0.01, sleep=lambda _s: None, concurrency=4)


def _stored(sink: RunningSink) -> dict[str, dict]:
    """shopmail_key -> the mail its recipient gets (substitutions applied by the server)."""
    found: dict[str, dict] = {}
    for request in sink.store.messages:
        for i, part in enumerate(request.payload["personalizations"]):
            found[part["custom_args"]["shopmail_key"]] = request.mail(i)
    return found


def test_each_request_carries_up_to_1000_recipients_and_each_gets_exactly_their_mail(
    mass_mails: list[OutgoingMail], sink: RunningSink
) -> None:
    with _sender(sink) as sender:
        results = sender.send_batch(mass_mails)
    assert {r.status for r in results} == {SendStatus.sent}
    sizes = sorted(len(r.payload["personalizations"]) for r in sink.store.messages)
    shared = sum(1 for m in mass_mails if m.substitutions)
    merged = [n for n in sizes if n > 1]
    assert max(sizes) == 1000 and sum(n for n in sizes if n >= 100) >= 0.9 * shared
    assert len(merged) <= shared / 500 + 12  # + the few bodies of rare name shapes (empty first name...)
    assert len(sizes) - len(merged) <= len(mass_mails) - shared  # odd names (token syntax...) go alone
    for request in sink.store.messages:
        subs = sum(len(p.get("substitutions", {})) for p in request.payload["personalizations"])
        assert subs <= MAX_SUBSTITUTIONS_PER_REQUEST
    stored = _stored(sink)
    assert len(stored) == len(mass_mails)
    for mail in mass_mails:  # SendGrid's substitution gives exactly the mail rendered for them
        want, got = mail.personalized(), stored[mail.message_key]
        text, html = (block["value"] for block in got["content"])
        assert (got["subject"], text, html) == (want.subject, want.text, want.html)
        assert got["to"][0]["email"] == mail.to_email
    ids = {r.provider_message_id for r in results}
    assert len(ids) == len(sink.store.messages)  # one X-Message-Id per request, shared by its mails


def test_a_refusal_naming_no_recipient_fails_every_mail_retryably_and_spends_the_budget(
    mass_mails: list[OutgoingMail], sink: RunningSink
) -> None:
    """A 400 about the request (a bad From, a malformed payload) would refuse every request alike:
    the mails are `failed` (sent again once the cause is fixed), never `rejected` for good."""
    first = group_for_requests(mass_mails)[0]
    assert len(first) == 1000
    sink.store.fail_next.extend([400])
    budget = ErrorBudget(5)
    with SendGridSender(KEY, sink.url, sleep=lambda _s: None, error_budget=budget) as sender:
        results = sender.send_batch(first)
    assert {r.status for r in results} == {SendStatus.failed}
    assert all(r.error.startswith("request refused: HTTP 400") for r in results)
    assert sink.store.messages == [] and budget.failures == 1


def test_a_bad_from_address_is_refused_by_the_server_and_fails_every_mail(
    mass_mails: list[OutgoingMail], sink: RunningSink
) -> None:
    first = [replace(m, from_email="news at shop") for m in group_for_requests(mass_mails)[0][:50]]
    budget = ErrorBudget(0)
    with SendGridSender(KEY, sink.url, sleep=lambda _s: None, error_budget=budget, concurrency=1) as sender:
        second = [replace(m, message_key=m.message_key + "b", subject=m.subject + "!") for m in first]
        results = sender.send_batch(first + second)
    assert {r.status for r in results} == {SendStatus.failed}
    assert "from.email" in results[0].error and sink.store.messages == []
    assert budget.exhausted  # the first refusal spent the budget: the second request was not attempted
    assert sink.store.requests == 1 and "not attempted" in results[-1].error


def test_a_refusal_naming_some_recipients_rejects_them_and_sends_the_others(
    mass_mails: list[OutgoingMail], sink: RunningSink
) -> None:
    """SendGrid refuses a whole request for one bad personalization: that recipient is rejected (for
    good), the others go again in a request of their own."""
    first = list(group_for_requests(mass_mails)[0][:200])
    too_late = int(time.time()) + 100 * 3600  # send_at over SendGrid's 72-hour limit
    first[3] = replace(first[3], send_at=too_late)
    first[150] = replace(first[150], send_at=too_late)
    with _sender(sink) as sender:
        results = {r.message_key: r for r in sender.send_batch(first)}
    bad = {first[3].message_key, first[150].message_key}
    assert {k for k, r in results.items() if r.status is SendStatus.rejected} == bad
    assert "send_at" in results[first[3].message_key].error
    assert {r.status for k, r in results.items() if k not in bad} == {SendStatus.sent}
    assert sink.store.requests == 2 and len(_stored(sink)) == 198
    assert not bad & set(_stored(sink))


def test_a_5xx_is_retried_and_the_request_stored_once(
    mass_mails: list[OutgoingMail], sink: RunningSink
) -> None:
    first = group_for_requests(mass_mails)[0]
    sink.store.fail_next.extend([500, 503])
    with _sender(sink) as sender:
        results = sender.send_batch(first)
    assert {r.status for r in results} == {SendStatus.sent}
    assert sink.store.requests == 3 and len(sink.store.messages) == 1
    assert max(sink.store.key_counts().values()) == 1


def test_an_answer_lost_after_acceptance_leaves_all_1000_in_doubt_never_resent(
    mass_mails: list[OutgoingMail], sink: RunningSink
) -> None:
    first = group_for_requests(mass_mails)[0]
    sink.store.set_faults(Faults())
    sink.store.fail_next.extend(["accept_drop"])
    with _sender(sink) as sender:
        results = sender.send_batch(first)
    assert {r.status for r in results} == {SendStatus.in_doubt}
    assert sink.store.requests == 1  # not retried: SendGrid has no idempotency key
    assert len(sink.store.doubt_keys) == 1000  # the server did accept all of them
    with _sender(sink) as sender:  # proof for the next run: the Activity API finds each of them
        addresses = {m.message_key: m.to_email for m in first}
        assert set(sender.confirm(list(addresses), addresses)) == set(addresses)


def test_requests_respect_the_10000_substitutions_limit() -> None:
    subs = {f"-smv.v{i}.t-": "x" for i in range(12)}  # 12 per recipient: 833 per request at most
    mails = [
        OutgoingMail(
            f"k{i}", f"r{i}@mailings.test", "S", "<p>b</p>", "b", "f@mailings.test", substitutions=subs
        )
        for i in range(2000)
    ]
    groups = group_for_requests(mails)
    assert [len(g) for g in groups] == [833, 833, 334]
    big = {**subs, "-smv.big.t-": "y" * 10_001}  # over the 10,000 bytes of one personalization
    [alone] = group_for_requests(
        [OutgoingMail("b", "b@mailings.test", "-smv.big.t-", "h", "t", "f@mailings.test", substitutions=big)]
    )
    assert alone[0].substitutions == {} and alone[0].subject == "y" * 10_001  # substituted here


def test_shared_bodies_are_not_copied_per_recipient(mass_mails: list[OutgoingMail]) -> None:
    """Memory: the mails of one body hold the same string objects."""
    bodies = {id(m.html) for m in mass_mails if m.substitutions}
    assert len(bodies) <= 16
