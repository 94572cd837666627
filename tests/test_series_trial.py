"""A series tried on a test customer from the run form (flows/series_trial.py, under the Prefect test
harness, SQLite shop and state DB, file outbox): every step's mail goes to the test address at once,
in order, marked as a test; nothing is recorded for the customer, whose real series then runs as if
the trial never happened. A customer without an occasion, a single-mail campaign and a bad address
get a clear answer and no mail."""

from __future__ import annotations

from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from prefect.artifacts import Artifact
from sqlalchemy import func, select

from config.settings import Settings
from shopmail.state import state_db
from shopmail.state.schema import send_ledger, series_entries
from tests.test_series import DAY, _shop_with_carts

TESTER = "tester@shop-team.example"


def _outbox(settings: Settings) -> list[tuple[str, str]]:
    """(recipient, subject) of every mail in the outbox, in subject order."""
    mails = []
    for path in settings.outbox_path.glob("*.eml") if settings.outbox_path.exists() else []:
        message = message_from_bytes(path.read_bytes())
        mails.append((str(message["To"]), str(make_header(decode_header(message["Subject"])))))
    return sorted(mails, key=lambda m: m[1])


def _rows(state, table) -> int:
    with state.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_series_tried_on_a_test_customer_sends_every_step_to_the_tester_and_records_nothing(
    prefect_harness, settings: Settings
) -> None:
    from flows.campaign import campaign_flow
    from flows.series_trial import series_trial_flow

    _, who = _shop_with_carts(settings)
    state = state_db.upgrade(settings.state_url_resolved)
    summary = series_trial_flow(
        campaign="Брошенная корзина", customer_id=who["A"], send_to=TESTER, as_of=DAY
    )  # the form offers the series by title
    assert "3 of 3 steps' mails, 3 sent to the test address" in summary, summary
    mails = _outbox(settings)
    assert [to for to, _ in mails] == [TESTER] * 3
    assert [subject[:10] for _, subject in mails] == ["[Test 1/3]", "[Test 2/3]", "[Test 3/3]"]
    assert _rows(state, send_ledger) == 0 and _rows(state, series_entries) == 0  # nothing recorded

    shown = Artifact.get("series-trial-abandoned-cart").data
    assert "Entry: `cart:9001`" in shown, shown
    # due 1 h, 1 day, 3 days after the cart left at 18:00 Moscow time on DAY
    for due in ("2026-11-20 19:00", "2026-11-21 18:00", "2026-11-23 18:00"):
        assert f"due {due} shop time" in shown, shown
    assert shown.count("Sent to the test address.") == 3 and "HTML version" in shown

    # the customer's real series is untouched: step 1 goes to the customer, as to the others
    real = campaign_flow(campaign="abandoned_cart", as_of=DAY)
    assert real.counts()["sent"] == 3
    to_customer = [to for to, _ in _outbox(settings) if to != TESTER]
    assert len(to_customer) == 3 and len(_outbox(settings)) == 6


def test_a_trial_without_a_test_address_only_shows_the_mails(prefect_harness, settings: Settings) -> None:
    from flows.series_trial import series_trial_flow

    _, who = _shop_with_carts(settings)
    summary = series_trial_flow(campaign="abandoned_cart", customer_id=who["B"], as_of=DAY)
    assert summary.endswith("3 of 3 steps' mails shown") and _outbox(settings) == []
    assert Artifact.get("series-trial-abandoned-cart").data.count("Shown only (no test address given).") == 3


def test_a_trial_says_why_there_is_nothing_to_try(prefect_harness, settings: Settings) -> None:
    from flows.series_trial import series_trial_flow

    _, who = _shop_with_carts(settings)
    other = next(i for i in range(1, 10) if i not in who.values())  # a customer with no cart
    no_cart = series_trial_flow(campaign="abandoned_cart", customer_id=other, send_to=TESTER, as_of=DAY)
    assert f"customer {other} has no occasion of this series" in no_cart, no_cart
    single = series_trial_flow(campaign="birthday", customer_id=who["A"], send_to=TESTER, as_of=DAY)
    assert "is a single mail, not a series" in single, single
    with pytest.raises(ValueError, match="not an e-mail address"):
        series_trial_flow(campaign="abandoned_cart", customer_id=who["A"], send_to="nobody", as_of=DAY)
    assert _outbox(settings) == []


def test_the_trial_form_offers_only_the_series() -> None:
    from flows.forms import campaign_titles
    from flows.series_trial import series_trial_flow

    offered = series_trial_flow.parameters.properties["campaign"]["enum"]
    titles = campaign_titles()
    assert set(offered) == {titles["abandoned_cart"], titles["welcome"], titles["wakeup"]}
