"""A marketer-chosen segment through the real flow: only its members are mailed, and the run's
snapshot answers "why did customer X get this mail"."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from config.settings import Settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.why import explain
from shopmail.shop.schema import customers
from shopmail.state import state_db
from shopmail.state.schema import send_ledger

pytestmark = pytest.mark.flow
AS_OF = date(2026, 11, 23)


def test_sale_to_women_mails_only_women_and_explains_why(prefect_harness, settings: Settings) -> None:
    from flows.campaign import SegmentName, campaign_flow

    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=11, today=AS_OF)
    assert "women" in SegmentName.__members__ and "all" in SegmentName.__members__
    report = campaign_flow(campaign="sale", as_of=AS_OF, segment="women", preapproved=True)
    assert report.segment == "women" and report.counts()["sent"] > 0

    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        mailed = {
            r.customer_id for r in conn.execute(select(send_ledger).where(send_ledger.c.status == "sent"))
        }
    with get_engine(settings.shop_url_resolved).connect() as conn:
        gender = dict(conn.execute(select(customers.c.id, customers.c.gender)).all())
    assert mailed and {gender[c] for c in mailed} == {"f"}

    someone = min(mailed)
    why = explain(someone, report.run_id, data_dir=settings.data_dir, state=state)
    assert why.snapshot_found and why.member and why.segment == "women"
    assert any(row["status"] == "sent" for row in why.ledger)
    man = next(c for c, g in gender.items() if g == "m")
    assert not explain(man, report.run_id, data_dir=settings.data_dir).member
