"""Series (campaign files with [[steps]]): the abandoned-cart series on the demo clock, end to end
through the real campaign flow (Prefect test harness, SQLite shop and state DB, file outbox), and the
pure planning rules (segments/series.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine, delete, insert, select, update
from typer.testing import CliRunner

from config.settings import Settings
from segments.holdout import in_holdout
from segments.series import exit_reasons, plan_steps
from shopmail import cli
from shopmail.campaigns import SeriesStep, get_campaign
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.results.series_funnel import series_funnel
from shopmail.shop import schema
from shopmail.state import state_db
from shopmail.state.schema import send_ledger, series_entries

DAY = date(2026, 11, 20)  # the demo clock: a run `as_of` a past day plans for 23:59:59 shop time
T0 = datetime(2026, 11, 20, 15, 0)  # carts left at 18:00 Moscow time (naive UTC)


def _consenting(shop: Engine, count: int, held: bool) -> list[int]:
    """`count` consenting customers with an address, in (or out of) the series' holdout."""
    with shop.connect() as conn:
        ids = [
            r.id
            for r in conn.execute(
                select(schema.customers.c.id).where(
                    schema.customers.c.marketing_consent.is_(True), schema.customers.c.email.is_not(None)
                )
            )
        ]
    mask = in_holdout("abandoned_cart", ids, get_campaign("abandoned_cart").holdout_percent)
    return [i for i, m in zip(ids, mask, strict=True) if bool(m) == held][:count]


def _shop_with_carts(settings: Settings) -> tuple[Engine, dict[str, int]]:
    """A demo shop whose only carts are the test's: customers A (full series), B (orders after step 1),
    C (touches the cart after step 2), H (held out)."""
    generate_demo_shop(settings.shop_url_resolved, customers=300, seed=11, today=DAY - timedelta(days=1))
    shop = get_engine(settings.shop_url_resolved)
    a, b, c = _consenting(shop, 3, held=False)
    (h,) = _consenting(shop, 1, held=True)
    who = {"A": a, "B": b, "C": c, "H": h}
    with shop.begin() as conn:
        conn.execute(delete(schema.cart_items))
        conn.execute(delete(schema.carts))
        product = conn.execute(
            select(schema.products.c.id).where(schema.products.c.in_stock.is_(True)).limit(1)
        ).scalar_one()
        for n, cid in enumerate(who.values(), start=1):
            conn.execute(insert(schema.carts).values(id=9000 + n, customer_id=cid, updated_at=T0))
            conn.execute(insert(schema.cart_items).values(cart_id=9000 + n, product_id=product, qty=1))
    return shop, who


def _ledger(state: Engine) -> pd.DataFrame:
    with state.connect() as conn:
        rows = conn.execute(select(send_ledger).where(send_ledger.c.campaign == "abandoned_cart")).all()
    return pd.DataFrame([dict(r._mapping) for r in rows])


@pytest.fixture
def uncapped(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The caps count on the wall clock; this test lives days in seconds, so they are off."""
    from config.settings import get_settings

    monkeypatch.setenv("SHOPMAIL_FREQUENCY_CAP", "0")
    monkeypatch.setenv("SHOPMAIL_DAILY_CAP", "0")
    get_settings.cache_clear()
    return get_settings()


def test_abandoned_cart_series_three_steps_exits_and_one_entry_per_cart(prefect_harness, uncapped) -> None:
    from flows.campaign import campaign_flow

    settings = uncapped
    shop, who = _shop_with_carts(settings)
    state = state_db.upgrade(settings.state_url_resolved)

    dry = campaign_flow(campaign="abandoned_cart", as_of=DAY, dry_run=True)
    assert dry.would_send() == 3 and dry.holdout == 1  # step 1 for A, B, C; H held out
    with state.connect() as conn:  # a dry run writes nothing
        assert conn.execute(select(series_entries)).all() == [] and _ledger(state).empty

    first = campaign_flow(campaign="abandoned_cart", as_of=DAY)
    assert first.counts()["sent"] == 3
    ledger = _ledger(state)
    assert sorted(ledger["occasion_key"]) == sorted(f"cart:{9000 + n}:step1" for n in range(1, 5))
    assert set(ledger.loc[ledger["status"] == "holdout", "customer_id"]) == {who["H"]}

    with shop.begin() as conn:  # B orders after step 1 (the order wins: no step 2)
        conn.execute(
            insert(schema.orders).values(
                id=990001, customer_id=who["B"], status="received", created_at=T0 + timedelta(hours=7),
                total=100, currency="RUB",
            )
        )  # fmt: skip
    second = campaign_flow(campaign="abandoned_cart", as_of=DAY + timedelta(days=1))
    assert second.counts()["sent"] == 2  # A and C

    with shop.begin() as conn:  # C touches the cart after step 2: the series ends, no new one starts
        conn.execute(
            update(schema.carts).where(schema.carts.c.id == 9003).values(updated_at=T0 + timedelta(days=2))
        )
    assert campaign_flow(campaign="abandoned_cart", as_of=DAY + timedelta(days=2)).counts()["sent"] == 0
    fourth = campaign_flow(campaign="abandoned_cart", as_of=DAY + timedelta(days=3))
    assert fourth.counts()["sent"] == 1  # A's third step only
    assert campaign_flow(campaign="abandoned_cart", as_of=DAY + timedelta(days=3)).counts()["sent"] == 0

    ledger = _ledger(state)
    sent = ledger[ledger["status"] == "sent"]
    assert sorted(sent.loc[sent["customer_id"] == who["A"], "occasion_key"]) == [
        "cart:9001:step1", "cart:9001:step2", "cart:9001:step3",
    ]  # fmt: skip
    assert sorted(sent.loc[sent["customer_id"] == who["B"], "occasion_key"]) == ["cart:9002:step1"]
    assert sorted(sent.loc[sent["customer_id"] == who["C"], "occasion_key"]) == [
        "cart:9003:step1",
        "cart:9003:step2",
    ]
    assert not sent["message_key"].duplicated().any()
    assert len(list(settings.outbox_path.glob("*.eml"))) == len(sent) == 6
    with state.connect() as conn:
        entries = {r.customer_id: r for r in conn.execute(select(series_entries))}
    assert len(entries) == 4  # one entry per cart: C's touched cart did not enter again
    assert entries[who["B"]].exit_reason == "ordered" and entries[who["C"]].exit_reason == "cart_changed"
    assert entries[who["A"]].exit_reason is None and entries[who["H"]].holdout
    held = ledger[ledger["customer_id"] == who["H"]]
    assert set(held["status"]) == {"holdout"} and len(held) == 3  # the whole series held out

    funnel = series_funnel(state, shop, get_campaign("abandoned_cart"))
    assert (funnel.entered, funnel.entered_holdout, funnel.mailed) == (4, 1, 3)
    assert [(s.sent, s.held_out) for s in funnel.steps] == [(3, 1), (2, 1), (1, 1)]
    assert funnel.exited == {"ordered since entering": 1, "changed or recovered the cart": 1}
    assert (funnel.mailed_converted, funnel.holdout_converted) == (1, 0)  # B ordered after step 1
    artifact = _artifact("series-abandoned-cart")
    assert (
        "| step 2 (1 day later): sent | 2 |" in artifact
        and "left the series: ordered since entering" in artifact
    )
    shown = CliRunner().invoke(cli.app, ["report", "abandoned_cart"], catch_exceptions=False)
    assert (
        shown.exit_code == 0 and "series funnel" in shown.output and "ordered since entering" in shown.output
    )


def _artifact(key: str) -> str:
    """The latest version of the artifact `key` on the test's Prefect server."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(versions, key=lambda a: a.created).data


STEPS = (
    SeriesStep(delay_hours=1, max_age_hours=12),
    SeriesStep(delay_hours=24, max_age_hours=24, conditions=("cart_total >= 1000",)),
    SeriesStep(delay_hours=48, after="previous", max_age_hours=24),
)
ENTRY = pd.DataFrame(
    {"entry_key": ["cart:1"], "customer_id": [5], "entered_at": [T0], "data": [{"cart_total": 500}]}
)


def test_a_step_is_due_after_its_moment_never_early_and_skipped_when_too_late() -> None:
    assert plan_steps(ENTRY, STEPS, {}, T0 + timedelta(minutes=59)).due == []  # not early
    assert plan_steps(ENTRY, STEPS, {}, T0 + timedelta(hours=1)).due == [("cart:1", 1)]
    late = plan_steps(ENTRY, STEPS, {}, T0 + timedelta(hours=14))
    assert late.due == [] and late.skipped == [("cart:1", 1, "too late: due 13 h ago, the step allows 12 h")]
    sent = {("cart:1", 1): ("sent", T0 + timedelta(hours=2))}
    day = plan_steps(ENTRY, STEPS, sent, T0 + timedelta(hours=25))  # condition fails: skipped in words
    assert day.skipped == [("cart:1", 2, "condition not met: cart_total >= 1000")] and day.due == []
    # step 3 counts from the skipped step 2's moment (T0 + 24 h) + 48 h
    assert plan_steps(ENTRY, STEPS, sent, T0 + timedelta(hours=71)).due == []
    assert plan_steps(ENTRY, STEPS, sent, T0 + timedelta(hours=72)).due == [("cart:1", 3)]
    pending = {("cart:1", 1): ("pending", T0)}  # a claimed step is handed back to the ledger, not skipped
    assert plan_steps(ENTRY, STEPS, pending, T0 + timedelta(days=5)).due == [("cart:1", 1)]


def test_exit_reasons_follow_the_files_order() -> None:
    entries = pd.DataFrame(
        {
            "entry_key": ["cart:1", "cart:2", "cart:3", "cart:4"],
            "customer_id": [1, 2, 3, 4],
            "entered_at": [T0] * 4,
            "data": [{"cart_id": 1}, {"cart_id": 2}, {"cart_id": 3}, {"cart_id": 4}],
        }
    )
    frames = {
        "orders": pd.DataFrame(
            {"customer_id": [1, 2], "created_at": [T0 + timedelta(hours=1), T0 - timedelta(days=1)]}
        ),
        "carts": pd.DataFrame(
            {
                "id": [1, 2, 3, 4],
                "customer_id": [1, 2, 3, 4],
                "updated_at": [T0, T0 + timedelta(hours=3), T0, T0],
            }
        ),
    }
    reasons = exit_reasons(
        entries, ("ordered", "cart_changed", "clicked", "unsubscribed"), frames,
        clicks={3: T0 + timedelta(hours=2)}, unsubscribed={1, 4},
    )  # fmt: skip
    assert reasons == {
        "cart:1": "ordered",
        "cart:2": "cart_changed",
        "cart:3": "clicked",
        "cart:4": "unsubscribed",
    }


@pytest.mark.parametrize("name", ["welcome", "wakeup", "abandoned_cart"])
def test_the_shipped_welcome_wakeup_and_cart_campaigns_are_series(name: str) -> None:
    from pathlib import Path

    from shopmail.campaigns import load_campaign

    config = Path(__file__).resolve().parent.parent / "config"
    spec = load_campaign(config / "campaigns" / f"{name}.toml")
    assert spec.is_series and spec.name == name
    delays = [step.delay_hours for step in spec.steps]
    assert delays == sorted(delays) and spec.series_words().startswith(f"A series of {len(delays)} mails")
    if name != "abandoned_cart":  # the earlier single mail is kept as an example, and still loads
        single = load_campaign(config / "single_mail_examples" / f"{name}.toml")
        assert not single.is_series and single.name == name and single.template == spec.template


def test_each_step_of_a_shipped_series_is_its_own_mail(settings: Settings) -> None:
    """The steps of welcome, wakeup and abandoned_cart say different things: a subject and a
    preheader of their own in each language (the sample data, through the real composer)."""
    from shopmail.campaigns import registry
    from shopmail.mail.samples import sample_products, sample_rows
    from shopmail.run.composer import MailComposer
    from shopmail.run.sample_mail import preheader_of
    from shopmail.run.series_run import step_spec

    folder = settings.templates_dir
    series = [spec for spec in registry().values() if spec.is_series]
    assert {spec.name for spec in series} >= {"welcome", "wakeup", "abandoned_cart"}
    for spec in series:
        row = sample_rows(spec.template, folder)[0]
        for language in ("ru", "en"):
            seen = set()
            for number in range(1, len(spec.steps) + 1):
                composer = MailComposer(
                    step_spec(spec, number), settings, sample_products(folder), strict=False
                )
                values = {**row, **spec.steps[number - 1].values, "series_step": number, "language": language}
                mail = composer.compose({**values, "message_key": f"k{number}"}).personalized()
                seen.add((mail.subject, preheader_of(mail.html)))
            subjects, preheaders = {s for s, _ in seen}, {p for _, p in seen}
            assert len(subjects) == len(preheaders) == len(spec.steps), (spec.name, language, seen)
