"""A/B tests in the campaign file: groups, the significance test, variant mails, and the whole test
end to end against the local SendGrid server whose recipients click variant b twice as often."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import flows.campaign  # noqa: F401 - its run form is built now, from the shipped campaigns
from config.settings import Settings, get_settings
from segments.ab_split import in_test_group, variant_index
from segments.holdout import in_holdout
from shopmail.campaigns import (
    CAMPAIGNS_DIR,
    AbTest,
    Campaign,
    CampaignError,
    TestVariant,
    load_campaign,
    registry,
)
from shopmail.results.ab_stats import VariantNumbers, decide
from tests.ab_campaigns import (
    SUBJECTS,
    ab_campaigns_dir,
    shipped_campaigns_afterwards,  # noqa: F401 - autouse
)

AS_OF = date(2026, 11, 27)


def _test(**changes) -> AbTest:
    values = {"variants": [{"name": "a"}, {"name": "b", "subject": "B"}], **changes}
    return AbTest(**values)


def test_campaign_file_rules_for_ab_tests(tmp_path: Path, settings: Settings) -> None:
    base = registry()["new_arrivals"].model_dump()
    assert Campaign(**{**base, "ab_test": _test().model_dump()}).ab_test.names == ["a", "b"]
    with pytest.raises(ValidationError, match="unique"):
        _test(variants=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(ValidationError, match="at least 2"):
        _test(variants=[{"name": "a"}])
    with pytest.raises(ValidationError, match="split mode"):
        _test(variants=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}])
    with pytest.raises(ValidationError, match="add up to 1"):
        _test(mode="split", variants=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.2}])
    series = registry()["wakeup"].model_dump()  # the shipped wakeup is a series: no A/B test on it
    with pytest.raises(ValidationError, match="a series has no A/B test"):
        Campaign(**{**series, "ab_test": _test(mode="split").model_dump()})
    wakeup = load_campaign(CAMPAIGNS_DIR.parent / "single_mail_examples" / "wakeup.toml").model_dump()
    with pytest.raises(ValidationError, match="continuous split"):
        Campaign(**{**wakeup, "ab_test": _test().model_dump()})
    assert Campaign(**{**wakeup, "ab_test": _test(mode="split").model_dump()}).ab_test.mode == "split"
    assert _test(metric="open_rate").warnings and "machine opens" in _test(metric="open_rate").warnings[0]
    assert not _test().warnings
    folder = ab_campaigns_dir(tmp_path / "campaigns")
    text = (folder / "news_ab.toml").read_text(encoding="utf-8")
    (folder / "news_ab.toml").write_text('test_variant = { name = "x" }\n' + text, encoding="utf-8")
    with pytest.raises(CampaignError, match="not in a file"):
        load_campaign(folder / "news_ab.toml")
    assert TestVariant(name="b", subject={"ru": "Б"}).text("subject", "en") is None


def test_groups_are_stable_random_and_apart_from_the_holdout() -> None:
    ids = np.arange(1, 200_001)
    members = in_test_group("news_ab", "news_ab:48", ids, 0.2)
    assert abs(members.mean() - 0.2) < 0.005
    assert (members == in_test_group("news_ab", "news_ab:48", ids[::-1], 0.2)[::-1]).all()  # stable
    other = in_test_group("news_ab", "news_ab:49", ids, 0.2)
    assert abs((members & other).mean() - 0.04) < 0.003  # another test: another group
    held = in_holdout("news_ab", ids, 10)
    assert abs((members & held).mean() - 0.02) < 0.002  # independent of the holdout
    index = variant_index("seed", ids, [0.5, 0.3, 0.2])
    assert np.allclose(np.bincount(index) / len(ids), [0.5, 0.3, 0.2], atol=0.005)


def _numbers(name: str, delivered: int, clicks: int, **more) -> VariantNumbers:
    return VariantNumbers(name, sent=delivered, delivered=delivered, clicked=clicks, **more)


def test_decide_by_significance_minimum_sample_and_bonferroni() -> None:
    test = _test(min_per_variant=500)
    clear = decide([_numbers("a", 1000, 40), _numbers("b", 1000, 80)], test)
    assert clear.winner == clear.leader == "b" and clear.significant and clear.decided_by == "test"
    assert clear.p_values["a"] < 0.001 and "two-proportion z-test" in clear.sentence
    few = decide([_numbers("a", 100, 4), _numbers("b", 100, 8)], test)
    assert few.leader == "b" and not few.enough and not few.significant and few.winner == "b"
    assert "500 mails" in few.sentence
    control = decide(
        [_numbers("a", 100, 4), _numbers("b", 100, 8)], _test(min_per_variant=500, if_no_difference="first")
    )
    assert control.winner == "a" and control.decided_by == "no_difference"
    close = decide([_numbers("a", 2000, 80), _numbers("b", 2000, 84)], test)
    assert not close.significant and close.p_values["a"] > 0.5
    # three variants: p = 0.03 beats 0.05 but not the Bonferroni level 0.025
    three = _test(variants=[{"name": "a"}, {"name": "b", "subject": "B"}, {"name": "c", "subject": "C"}])
    a, b = _numbers("a", 3000, 120), _numbers("b", 3000, 152)
    from shopmail.results.ab_stats import p_value

    assert 0.025 < p_value(b, a, three.metric) < 0.05
    assert not decide([a, b, _numbers("c", 3000, 60)], three).significant
    # revenue per recipient: Welch's t-test on per-recipient amounts
    revenue = _test(metric="revenue_per_recipient", min_per_variant=500)
    low = VariantNumbers("a", sent=1000, revenue=10_000.0, revenue_squares=10_000.0 * 1000 / 10)
    high = VariantNumbers("b", sent=1000, revenue=30_000.0, revenue_squares=30_000.0 * 1000 / 10)
    decided = decide([low, high], revenue)
    assert decided.winner == "b" and decided.significant and "Welch" in decided.sentence


def test_a_variant_changes_subject_and_sender_in_every_mail_shared_or_not(settings: Settings) -> None:
    from shopmail.campaigns import get_campaign
    from shopmail.db import get_engine
    from shopmail.devtools.demo_shop import generate_demo_shop
    from shopmail.run.composer import MailComposer
    from shopmail.run.pipeline import product_lookup, select_recipients
    from shopmail.shop.extract import extract
    from shopmail.state import state_db

    generate_demo_shop(settings.shop_url_resolved, customers=800, seed=3, today=AS_OF)
    spec = get_campaign("new_arrivals")
    frames = extract(get_engine(settings.shop_url_resolved), spec.datasets, AS_OF, settings.tz, 30)
    state = state_db.upgrade(settings.state_url_resolved)
    rows = select_recipients(spec, frames, AS_OF, settings, state, set()).eligible.to_dict("records")
    assert len(rows) > 50
    variant = TestVariant(
        name="b",
        subject={"ru": "{{ customer.first_name or 'Привет' }}: новинки", "en": "New for you"},
        sender_name="Команда",
    )
    composer = MailComposer(
        spec.model_copy(update={"test_variant": variant}), settings, product_lookup(frames["products"])
    )
    mails, errors = composer.compose_many(rows)
    assert not errors and len(mails) == len(rows) and composer.stats["shared"] > 0  # render once still works
    for row, mail in zip(rows, mails, strict=True):
        full = composer.compose(row)
        assert mail.personalized() == full
        expected = (
            f"{row['first_name'] or 'Привет'}: новинки" if full.text and row.get("language") != "en" else None
        )
        if expected:
            assert full.subject == expected
        assert full.from_name == "Команда"
    plain = MailComposer(spec, settings, product_lookup(frames["products"])).compose(rows[0])
    assert plain.subject != composer.compose(rows[0]).subject and plain.html == composer.compose(rows[0]).html


# --- end to end -------------------------------------------------------------------------------------

TRUE_CLICK = {"a": 0.04, "b": 0.08}


def _loop_env(loop, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    for key, value in {**loop.env, "SHOPMAIL_CAMPAIGNS_DIR": str(folder)}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    registry.cache_clear()
    from flows.forms import campaign_titles

    campaign_titles.cache_clear()


def _rates(open_rate: float = 0.3):
    from shopmail.devtools.sink_engagement import EngagementConfig, RateRule, Rates

    base = Rates(bounce_hard=0.01, bounce_soft=0.0, blocked=0.0, deferred=0.05, open=open_rate, machine=0.3)
    rules = tuple(
        RateRule({"campaign": "news_ab", "variant": name}, dataclasses.replace(base, click=rate))
        for name, rate in TRUE_CLICK.items()
    )
    return EngagementConfig(
        enabled=True, default=base, rules=rules, open_delay_s=0.3, click_delay_s=0.3, seed=5
    )


@pytest.mark.flow
def test_ab_test_picks_the_better_subject_sends_it_to_the_rest_and_reports_the_true_rates(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.campaign import campaign_flow
    from shopmail.devtools.demo_shop import generate_demo_shop
    from shopmail.devtools.local_loop import local_loop
    from shopmail.devtools.sink_webhook import WebhookConfig
    from shopmail.results.engagement import count_engagement
    from shopmail.state import ab_tests, state_db

    folder = ab_campaigns_dir(tmp_path / "campaigns", test_share=0.4, min_per_variant=300, wait_hours=0.003)
    generate_demo_shop(settings.shop_url_resolved, customers=7000, seed=8, today=AS_OF)
    state = state_db.upgrade(settings.state_url_resolved)
    webhook = WebhookConfig(delay_s=0.1, jitter_s=1.0, duplicate_rate=0.2, seed=3)
    with local_loop(settings, state, _rates(), webhook) as loop:
        _loop_env(loop, monkeypatch, folder)
        report = campaign_flow(campaign="news_ab", as_of=AS_OF)
        loop.drain()
        received = [
            (p["custom_args"], m.payload.get("subject") or p.get("subject"))
            for m in loop.sink.store.messages
            for p in m.payload["personalizations"]
        ]
        truth = loop.truth()

    (test,) = ab_tests.recent_tests(state, "news_ab")
    assert test["status"] == "done" and test["winner"] == "b" and test["decided_by"] == "test"
    assert "Variant b wins" in test["decision"]["sentence"]
    customers = Counter(int(args["customer_id"]) for args, _ in received)
    assert max(customers.values()) == 1  # nobody twice, across the phases
    assert report.counts()["sent"] == len(customers) == report.eligible
    # the test group got its variants, everyone else the winner, with the winner's subject
    key = test["test_key"]
    members = set(
        np.array(sorted(customers))[in_test_group("news_ab", key, np.array(sorted(customers)), 0.4)]
    )
    for args, subject in received:
        variant = args["variant"]
        assert subject == SUBJECTS[variant] or subject.startswith("New this week")
        if int(args["customer_id"]) not in members:
            assert variant == "b"
    held = in_holdout("news_ab", np.array(sorted(customers)), 5)
    assert not held.any() and report.holdout > 0  # the holdout is in neither phase
    # the report's rates per variant are the server's truth, and the true rates within sampling error
    since = state_db.utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    groups = {
        (g.label["variant"], g.label["test_phase"]): g
        for g in count_engagement(
            state, "news_ab", since, since + timedelta(days=2), ["variant", "test_phase"]
        )
    }
    truth_by_variant = {g["variant"]: g for g in truth["groups"]}
    for name, rate in TRUE_CLICK.items():
        tested = groups[(name, "test")]
        assert tested.delivered > 300
        se = math.sqrt(rate * (1 - rate) / tested.delivered)
        assert abs(tested.click_rate - rate) < 3 * se, (name, tested.click_rate)
    assert (
        sum(g.clicked for g in groups.values() if g.label["variant"] == "b") == truth_by_variant["b"]["click"]
    )
    assert sum(g.delivered for g in groups.values()) == sum(g["delivered"] for g in truth["groups"])


@pytest.mark.flow
def test_a_marketer_picks_the_winner_while_the_test_waits(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input
    from prefect.input.run_input import keyset_from_base_key

    from flows.campaign import campaign_flow
    from shopmail.devtools.demo_shop import generate_demo_shop
    from shopmail.devtools.local_loop import local_loop
    from shopmail.state import ab_tests, state_db

    folder = ab_campaigns_dir(tmp_path / "campaigns", test_share=0.3, min_per_variant=50, wait_hours=1.0)
    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=9, today=AS_OF)
    state = state_db.upgrade(settings.state_url_resolved)
    answered: list[str] = []
    forms: list[str] = []

    def marketer() -> None:  # what the Resume dialog does: the paused run gets the form's answer
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                paused = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                    )
                )
                if paused:
                    time.sleep(3.0)  # the numbers refresh every 1.2 s (refresh_minutes = 0.02)
                    (test,) = ab_tests.recent_tests(state, "news_ab")
                    key = keyset_from_base_key(f"paused-ab-test-{test['id']}")["description"]
                    forms.append(read_flow_run_input(key=key, flow_run_id=paused[0].id))
                    resume_flow_run(paused[0].id, run_input={"winner": "a", "note": "our brand voice"})
                    answered.append(str(paused[0].id))
                    return
                time.sleep(0.5)

    with local_loop(settings, state, _rates()) as loop:
        _loop_env(loop, monkeypatch, folder)
        thread = threading.Thread(target=marketer, daemon=True)
        thread.start()
        started = time.monotonic()
        report = campaign_flow(campaign="news_ab", as_of=AS_OF)
        thread.join(timeout=10)
        variants = Counter(
            p["custom_args"]["variant"]
            for m in loop.sink.store.messages
            for p in m.payload["personalizations"]
        )
    assert answered and time.monotonic() - started < 600  # resumed long before the hour's wait
    # the pause form showed the live numbers per variant, refreshed while the run waited
    assert forms and "| a |" in forms[0] and "| b |" in forms[0] and "waiting until" in forms[0]
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ab-test-news-ab"]))
        )
    texts = [a.data for a in versions]
    assert any("live numbers" in t for t in texts) and any("chosen by a marketer" in t for t in texts)
    (test,) = ab_tests.recent_tests(state, "news_ab")
    assert (test["status"], test["winner"], test["decided_by"]) == ("done", "a", "marketer")
    assert "our brand voice" in test["decision"]["sentence"]
    assert variants["a"] > variants["b"] > 0 and report.counts()["sent"] == sum(variants.values())


@pytest.mark.flow
def test_a_trigger_runs_a_continuous_split_without_a_winner_phase(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from email import message_from_bytes
    from email.header import decode_header, make_header
    from email.utils import parseaddr

    from sqlalchemy import select

    from flows.campaign import campaign_flow
    from flows.forms import campaign_titles
    from segments.ab_split import split_seed
    from shopmail.devtools.demo_shop import generate_demo_shop
    from shopmail.state import ab_tests, state_db
    from shopmail.state.schema import mail_results

    folder = ab_campaigns_dir(tmp_path / "campaigns")
    split = '\n[ab_test]\nmode = "split"\n' + "".join(
        f'\n[[ab_test.variants]]\nname = "{name}"\nsender_name = "{sender}"\nshare = {share}\n'
        for name, sender, share in (("a", "Магазин", 0.5), ("b", "Команда магазина", 0.5))
    )
    (folder / "wakeup.toml").write_text((folder / "wakeup.toml").read_text(encoding="utf-8") + split)
    monkeypatch.setenv("SHOPMAIL_CAMPAIGNS_DIR", str(folder))
    get_settings.cache_clear()
    registry.cache_clear()
    campaign_titles.cache_clear()
    generate_demo_shop(settings.shop_url_resolved, customers=6000, seed=4, today=date(2026, 11, 23))
    report = campaign_flow(campaign="wakeup", as_of=date(2026, 11, 23))
    assert report.counts()["sent"] > 60 and not report.problem
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(
            select(mail_results.c.customer_id, mail_results.c.test_variant, mail_results.c.test_phase)
        ).all()
    assert {phase for _, _, phase in rows} == {"split"} and len(rows) == report.counts()["sent"]
    ids = np.array([c for c, _, _ in rows])
    expected = np.array(["a", "b"])[variant_index(split_seed("wakeup"), ids, [0.5, 0.5])]
    assert [v for _, v, _ in rows] == expected.tolist()  # stable per customer: the same draw every run
    assert set(expected) == {"a", "b"}
    senders = Counter()
    for path in settings.outbox_path.glob("*.eml"):
        message = message_from_bytes(path.read_bytes())
        senders[str(make_header(decode_header(parseaddr(message["From"])[0] or message["From"])))] += 1
    assert set(senders) == {"Магазин", "Команда магазина"} and sum(senders.values()) == len(rows)
    assert not ab_tests.recent_tests(state)  # no test row, no wait, no winner
