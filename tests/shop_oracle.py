"""An independent, row-by-row statement of the wake-up rule, to check the pandas pipeline against."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

EMAIL = re.compile(r"^[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")


def _as_dt(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def expected_wakeup(
    shop: Engine, as_of: date, tz: str = "Europe/Moscow", days=(7, 14), holdout: bool = True
) -> dict[int, int]:
    """customer_id -> order_id of everyone who should get the wake-up mail on `as_of`
    (marketing consent and a valid address; suppressions and ledger not considered; the campaign's
    holdout group left out unless `holdout=False`)."""
    zone = ZoneInfo(tz)
    with shop.connect() as conn:
        orders = conn.execute(text("SELECT id, customer_id, created_at FROM orders")).all()
        delivered = dict(
            conn.execute(
                text("SELECT order_id, changed_at FROM order_status_history WHERE status = 'delivered'")
            ).all()
        )
        people = {
            row.id: row
            for row in conn.execute(text("SELECT id, email, marketing_consent FROM customers")).all()
        }
    last_order: dict[int, datetime] = {}
    for order in orders:
        created = _as_dt(order.created_at)
        last_order[order.customer_id] = max(created, last_order.get(order.customer_id, created))
    chosen: dict[int, tuple[datetime, int]] = {}
    for order in orders:
        if order.id not in delivered:
            continue
        local_day = _as_dt(delivered[order.id]).replace(tzinfo=UTC).astimezone(zone).date()
        if (as_of - local_day).days not in days:
            continue
        created = _as_dt(order.created_at)
        if created < last_order[order.customer_id]:
            continue  # ordered again since
        best = chosen.get(order.customer_id)
        if best is None or (created, order.id) > best:
            chosen[order.customer_id] = (created, order.id)
    result = {}
    for customer_id, (_, order_id) in chosen.items():
        person = people[customer_id]
        if person.marketing_consent and person.email and EMAIL.match(person.email):
            result[customer_id] = order_id
    return without_holdout(result) if holdout else result


def without_holdout(expected: dict[int, int], campaign: str = "wakeup") -> dict[int, int]:
    """`expected` minus the campaign's holdout group (they are recorded, never mailed)."""
    from segments.holdout import in_holdout
    from shopmail.campaigns import get_campaign

    ids = sorted(expected)
    mask = in_holdout(campaign, ids, get_campaign(campaign).holdout_percent)
    return {c: expected[c] for c, held in zip(ids, mask, strict=True) if not held}
