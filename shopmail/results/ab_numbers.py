"""The live numbers of an A/B test: what each variant's test mails did so far (opens and clicks from
the webhook, orders from the shop), and the same as a table a marketer reads while the test waits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, case, func, select

from shopmail.campaigns import AbTest, WinnerMetric
from shopmail.results.ab_stats import METRIC_WORDS, TEST_WORDS, Decision, VariantNumbers, format_value
from shopmail.results.attribution import load_orders
from shopmail.state.engagement import settle_sent
from shopmail.state.schema import mail_results
from shopmail.state.state_db import utcnow


def variant_numbers(
    state: Engine,
    shop: Engine | None,
    campaign: str,
    since: datetime,
    names: list[str],
    until: datetime | None = None,
) -> list[VariantNumbers]:
    """Each variant's numbers: the campaign's test-phase mails sent since `since`; orders (not
    cancelled) of their recipients placed after their mail and before `until` (default: now)."""
    settle_sent(state, campaign, since)
    r = mail_results.c
    where = (r.campaign == campaign, r.test_phase == "test", r.sent_at >= since)
    person = (r.opened_at.is_not(None)) | (r.clicked_at.is_not(None))
    query = (
        select(
            r.test_variant,
            func.count(),
            func.count(r.delivered_at),
            func.sum(case((person, 1), else_=0)),
            func.count(r.clicked_at),
        )
        .where(*where)
        .group_by(r.test_variant)
    )
    with state.connect() as conn:
        counts = {v: (int(s), int(d), int(o or 0), int(c)) for v, s, d, o, c in conn.execute(query)}
        recipients = pd.DataFrame(
            conn.execute(select(r.customer_id, r.sent_at, r.test_variant).where(*where)).all(),
            columns=["customer_id", "sent_at", "variant"],
        )
    amounts = _order_amounts(shop, recipients, since, until or utcnow()) if shop is not None else {}
    numbers = []
    for name in names:
        sent, delivered, opened, clicked = counts.get(name, (0, 0, 0, 0))
        orders, revenue, orders_sq, revenue_sq = amounts.get(name, (0, 0.0, 0.0, 0.0))
        numbers.append(
            VariantNumbers(name, sent, delivered, opened, clicked, orders, revenue, orders_sq, revenue_sq)
        )
    return numbers


def _order_amounts(
    shop: Engine, recipients: pd.DataFrame, since: datetime, until: datetime
) -> dict[str, tuple[int, float, float, float]]:
    """variant -> (orders, revenue, sum of squared orders per recipient, sum of squared revenue)."""
    if recipients.empty:
        return {}
    orders = load_orders(shop, recipients["customer_id"], since, until)
    orders = orders[orders["status"].astype(str) != "cancelled"]
    per = recipients.assign(sent_at=pd.to_datetime(recipients["sent_at"])).merge(orders, on="customer_id")
    per = per[per["created_at"] >= per["sent_at"]]
    by_customer = per.groupby(["variant", "customer_id"]).agg(
        orders=("order_id", "count"), revenue=("total", "sum")
    )
    found = {}
    for variant, rows in by_customer.groupby(level=0):
        found[str(variant)] = (
            int(rows["orders"].sum()),
            float(rows["revenue"].sum()),
            float((rows["orders"] ** 2).sum()),
            float((rows["revenue"].astype(float) ** 2).sum()),
        )
    return found


def numbers_rows(numbers: list[VariantNumbers], test: AbTest) -> list[dict[str, Any]]:
    """One row per variant in a marketer's words."""
    rows = []
    for n in numbers:
        rows.append(
            {
                "variant": n.name,
                "mails sent": n.sent,
                "delivered": n.delivered,
                "opened by people": n.opened,
                "clicked": n.clicked,
                "click rate": format_value(WinnerMetric.click_rate, n.value(WinnerMetric.click_rate)),
                "orders after the mail": n.orders,
                "revenue": f"{n.revenue:,.2f}",
                METRIC_WORDS[test.metric]: format_value(test.metric, n.value(test.metric)),
            }
        )
    return rows


def numbers_markdown(
    campaign: str, test: AbTest, numbers: list[VariantNumbers], status: str, decision: Decision | None = None
) -> str:
    """The test's numbers as Markdown: the table, what decides and how, the decision so far."""
    rows = numbers_rows(numbers, test)
    head = list(rows[0]) if rows else ["variant"]
    lines = [
        f"## A/B test of {campaign}: {status}",
        "",
        f"Deciding metric: **{METRIC_WORDS[test.metric]}**, {TEST_WORDS[test.metric]}, "
        f"confidence {test.confidence:.0%}, at least {test.min_per_variant:,} mails per variant.",
        *[f"> {warning}" for warning in test.warnings],
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows],
    ]
    if decision is not None:
        lines += ["", f"**{decision.sentence}**"]
    return "\n".join(lines)
