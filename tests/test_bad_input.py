"""Bad shop data gets a clear answer: one mail per address, implausible audiences pause, a template
broken for some recipients fails the run, names are cleaned rather than punished (issue 12)."""

from __future__ import annotations

import email
import email.policy
import shutil
import threading
from datetime import date
from email.utils import getaddresses
from pathlib import Path

import pytest
from sqlalchemy import select, text

from config.settings import Settings, get_settings
from shopmail.campaigns import CampaignKind, get_campaign
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.approval import PLAUSIBLE_FLOOR, needs_approval
from shopmail.state import state_db
from shopmail.state.schema import run_summaries, send_ledger

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)


@pytest.fixture
def demo_shop(settings: Settings) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=2000, seed=7, today=AS_OF)
    return settings


@pytest.fixture(params=["sqlite", "postgresql"])
def any_shop(request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """The demo shop on SQLite, or on a real PostgreSQL server with the state DB there too."""
    if request.param == "sqlite":
        generate_demo_shop(settings.shop_url_resolved, customers=2000, seed=7, today=AS_OF)
        yield settings
        return
    from tests.test_shop_databases import SERVERS, _scratch_database

    shop_gen, state_gen = _scratch_database(SERVERS["postgresql"]), _scratch_database(SERVERS["postgresql"])
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", next(shop_gen))
    monkeypatch.setenv("SHOPMAIL_STATE_DB_URL", next(state_gen))
    get_settings.cache_clear()
    pg = get_settings()
    generate_demo_shop(pg.shop_url_resolved, customers=2000, seed=7, today=AS_OF)
    try:
        yield pg
    finally:
        for gen in (shop_gen, state_gen):
            next(gen, None)


def _sent(settings: Settings, campaign: str) -> list:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        return conn.execute(
            select(send_ledger).where(send_ledger.c.campaign == campaign, send_ledger.c.status == "sent")
        ).all()


def _outbox(settings: Settings) -> list[email.message.Message]:
    folder = settings.outbox_path
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def _summary(settings: Settings, campaign: str):
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        return conn.execute(select(run_summaries).where(run_summaries.c.campaign == campaign)).one()


@pytest.mark.parametrize(
    ("eligible", "base", "needed"),
    [(1396, 2000, True), (19, 2000, False), (21, 2000, True), (30, 10_000, False), (150, 10_000, True)],
)
def test_an_implausible_first_run_needs_approval(eligible: int, base: int, needed: bool) -> None:
    """No history at all: the base alone says 1,396 birthdays of 2,000 customers is wrong."""
    decision = needs_approval(CampaignKind.occasion, eligible, [], 3, 500, None, base=base, max_share=0.01)
    assert decision.needed is needed
    assert PLAUSIBLE_FLOOR == 20
    if needed:
        assert "implausible" in decision.reason and f"{base:,} customers" in decision.reason


def test_every_birthday_today_pauses_a_first_run(prefect_harness, any_shop: Settings) -> None:
    demo_shop = any_shop
    from prefect.flow_runs import resume_flow_run

    from flows.campaign import campaign_flow
    from tests.test_approval import _paused_run

    shop = get_engine(demo_shop.shop_url_resolved)
    with shop.begin() as conn:
        conn.execute(text("UPDATE customers SET birth_date = :d"), {"d": date(1990, AS_OF.month, AS_OF.day)})
    outcome: dict = {}

    def target() -> None:
        try:
            campaign_flow(campaign="birthday", as_of=AS_OF)
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    paused = _paused_run()
    resume_flow_run(paused.id, run_input={"approve": False, "note": "birth dates broken by an import"})
    thread.join(120)
    assert "Send not approved" in str(outcome.get("error"))
    assert _sent(demo_shop, "birthday") == [] and _outbox(demo_shop) == []
    row = _summary(demo_shop, "birthday")
    assert row.status == "rejected" and "implausible" in row.details["approval"]


def test_one_mail_per_address_and_unsubscribes_follow_the_address(
    prefect_harness, any_shop: Settings
) -> None:
    """Three accounts share one address (case, spaces); a fourth account's address unsubscribed through
    another account: the first address gets one mail, the second none."""
    from flows.campaign import campaign_flow

    demo_shop = any_shop

    dry = campaign_flow(campaign="new_arrivals", as_of=AS_OF, dry_run=True)
    assert dry.eligible > 10
    state = state_db.upgrade(demo_shop.state_url_resolved)
    shop = get_engine(demo_shop.shop_url_resolved)
    with shop.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                text("SELECT id FROM customers WHERE marketing_consent ORDER BY id LIMIT 20")
            )
        ]
    from segments.holdout import in_holdout

    pct = get_campaign("new_arrivals").holdout_percent
    a, b, c, d, e = [
        i for i, held in zip(ids, in_holdout("new_arrivals", ids, pct), strict=True) if not held
    ][:5]
    with shop.begin() as conn:
        conn.execute(text("UPDATE customers SET email = 'Shared@Mail.example' WHERE id = :i"), {"i": a})
        conn.execute(text("UPDATE customers SET email = ' shared@mail.example ' WHERE id = :i"), {"i": b})
        conn.execute(text("UPDATE customers SET email = 'shared@MAIL.example' WHERE id = :i"), {"i": c})
        conn.execute(
            text("UPDATE customers SET email = 'gone@mail.example' WHERE id IN (:i, :j)"), {"i": d, "j": e}
        )
    from shopmail.mail.links import unsubscribe_token
    from shopmail.state.feedback import unsubscribe

    secret = demo_shop.unsubscribe_secret.get_secret_value()
    assert unsubscribe(state, secret, unsubscribe_token(secret, e, "new_arrivals"))
    report = campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
    recipients = [addr for m in _outbox(demo_shop) for _, addr in getaddresses([m["To"]])]
    assert len(recipients) == len(_sent(demo_shop, "new_arrivals")) > 10
    shared = [r for r in recipients if r.lower() == "shared@mail.example"]
    assert len(shared) == 1 and shared[0].endswith("@mail.example")  # the domain lower-cased
    assert not [r for r in recipients if "gone@" in r]
    assert report.skipped.get("duplicate_address") == 2
    assert report.skipped.get("unsubscribed") == 2


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_a_template_broken_for_some_recipients_fails_the_run(
    prefect_harness, demo_shop: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A branch only every third order reaches: the preflight sample catches it before any send; when
    the preflight misses such a branch, the rendered mails go and the run fails, naming the template."""
    from flows.campaign import campaign_flow
    from flows.steps import RenderFailed, TemplateCheckFailed

    templates = tmp_path / "templates"
    shutil.copytree(demo_shop.templates_dir, templates)
    for language in ("ru", "en"):
        body = templates / "wakeup" / language / "body.html.j2"
        body.write_text(
            body.read_text(encoding="utf-8").replace(
                "{{ order_id }}",
                # not the sample mail's order (9999999), which the load-time length check renders
                "{{ order_id }}{% if order_id is divisibleby 3 and order_id != 9999999 %}"
                "{{ order.number }}{% endif %}",
            )
        )
    monkeypatch.setenv("SHOPMAIL_TEMPLATES_DIR", str(templates))
    monkeypatch.setenv("SHOPMAIL_FREQUENCY_CAP", "0")
    get_settings.cache_clear()
    with pytest.raises(TemplateCheckFailed):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert _sent(demo_shop, "wakeup") == []

    # a branch the preflight did not reach (its samples are data-dependent): send-time render errors
    monkeypatch.setattr("flows.steps.preflight", lambda *args, **kwargs: [])
    with pytest.raises(RenderFailed, match="could not be rendered with template 'wakeup'"):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    sent = _sent(demo_shop, "wakeup")
    rows = [r for r in state_db.recent_runs(state_db.upgrade(demo_shop.state_url_resolved), "wakeup")]
    assert rows[0]["status"] == "failed" and "order" in rows[0]["details"]["problem"]
    assert sent and all(int(r.occasion_key.rsplit(":", 1)[1]) % 3 for r in sent)


def test_control_characters_in_names_are_cleaned_and_the_mail_goes(
    prefect_harness, demo_shop: Settings
) -> None:
    from flows.campaign import campaign_flow

    campaign_flow(campaign="new_arrivals", as_of=AS_OF, dry_run=True)
    shop = get_engine(demo_shop.shop_url_resolved)
    with shop.connect() as conn:
        victim = conn.execute(
            text("SELECT id, email FROM customers WHERE marketing_consent ORDER BY id")
        ).first()
    with shop.begin() as conn:
        conn.execute(
            text("UPDATE customers SET first_name = :n WHERE id = :i"),
            {"n": "Анна\r\nBcc: evil@attacker.example\u200b\t", "i": victim.id},
        )
    campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
    mails = [m for m in _outbox(demo_shop) if victim.email.strip().lower() in m["To"].lower()]
    assert len(mails) == 1
    mail = mails[0]
    assert mail["Bcc"] is None
    assert mail["To"].addresses[0].display_name.startswith("Анна Bcc: evil@attacker.example")
    body = mail.get_body(("plain",)).get_content()
    assert "Анна Bcc: evil@attacker.example" in body
    assert "\u200b" not in body


def test_a_campaign_whose_optional_dataset_is_missing_is_skipped_not_failed(
    prefect_harness, demo_shop: Settings
) -> None:
    """No carts in this shop (WooCommerce keeps them in PHP sessions): `abandoned_cart` is skipped with
    a clear reason, Completed, nothing sent; campaigns that do not need carts are unaffected."""
    from flows.campaign import campaign_flow

    shop = get_engine(demo_shop.shop_url_resolved)
    with shop.begin() as conn:
        conn.exec_driver_sql("DROP TABLE cart_items")
        conn.exec_driver_sql("DROP TABLE carts")
    report = campaign_flow(campaign="abandoned_cart", as_of=AS_OF)
    assert "no carts, cart_items table or view" in report.problem
    assert _summary(demo_shop, "abandoned_cart").status == "skipped"
    assert _sent(demo_shop, "abandoned_cart") == []
    assert campaign_flow(campaign="wakeup", as_of=AS_OF).counts()["sent"] > 0
