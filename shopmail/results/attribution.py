"""Measured results of a campaign: mailed vs holdout, conversion and revenue uplift.

Who: the send ledger's rows of the campaign in the period, `sent` (mailed, at `updated_at`: when the
provider accepted it) and `holdout` (held out, at `created_at`: when the run that would have mailed
them wrote the row). A customer with any mailed row counts as mailed (a changed holdout percent can
leave someone in both).

What counts: an order of that customer, not cancelled, created within `window_days` after one of
their mails (or holdout rows) of the period; each order once. Coupons Shopmail issued with a mail
(`issued_coupons`) that the shop marks `used` are counted separately as coupon conversions (the shop
contract has no order -> coupon link, so they carry no revenue and, the holdout having no coupons,
stay out of the uplift).

Pure functions over DataFrames plus loaders (SQLAlchemy Core, chunked IN queries); all times naive UTC.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, select

from segments.local_time import local_to_utc
from shopmail.shop import schema as shop
from shopmail.state.schema import issued_coupons, send_ledger

MAILED, HOLDOUT = "mailed", "holdout"
GROUPS = (MAILED, HOLDOUT)
_CHUNK = 2000
MAIL_COLUMNS = ["message_key", "customer_id", "group", "mailed_at"]
ORDER_COLUMNS = ["order_id", "customer_id", "created_at", "total", "status"]


@dataclass(frozen=True)
class GroupMetrics:
    recipients: int
    converters: int
    orders: int
    revenue: float

    @property
    def conversion(self) -> float | None:
        return self.converters / self.recipients if self.recipients else None

    @property
    def revenue_per_recipient(self) -> float | None:
        return self.revenue / self.recipients if self.recipients else None


@dataclass(frozen=True)
class CampaignResult:
    campaign: str
    since: datetime  # naive UTC, inclusive
    until: datetime  # naive UTC, exclusive
    window_days: int
    mailed: GroupMetrics
    holdout: GroupMetrics
    coupons_issued: int = 0
    coupons_used: int = 0
    coupon_converters: int = 0  # mailed customers with at least one used coupon
    days: tuple[date, date] | None = None  # the shop-local days [first, last] the period covers

    @property
    def conversion_uplift(self) -> float | None:
        """Mailed minus holdout conversion rate (absolute, as a fraction)."""
        return _diff(self.mailed.conversion, self.holdout.conversion)

    @property
    def conversion_uplift_relative(self) -> float | None:
        return _relative(self.mailed.conversion, self.holdout.conversion)

    @property
    def revenue_uplift(self) -> float | None:
        """Mailed minus holdout revenue per recipient."""
        return _diff(self.mailed.revenue_per_recipient, self.holdout.revenue_per_recipient)

    @property
    def revenue_uplift_relative(self) -> float | None:
        return _relative(self.mailed.revenue_per_recipient, self.holdout.revenue_per_recipient)

    @property
    def incremental_revenue(self) -> float | None:
        """Revenue the mail added: uplift per recipient times the mailed recipients."""
        uplift = self.revenue_uplift
        return None if uplift is None else uplift * self.mailed.recipients

    @property
    def p_value(self) -> float | None:
        """Two-sided two-proportion z-test of mailed vs holdout conversion."""
        return two_proportion_p_value(
            self.mailed.converters, self.mailed.recipients, self.holdout.converters, self.holdout.recipients
        )

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(measure, mailed, holdout, uplift, relative uplift) as display strings."""
        m, h = self.mailed, self.holdout
        return [
            ("recipients", f"{m.recipients:,}", f"{h.recipients:,}", "", ""),
            ("converters", f"{m.converters:,}", f"{h.converters:,}", "", ""),
            ("orders", f"{m.orders:,}", f"{h.orders:,}", "", ""),
            (
                "conversion",
                _pct(m.conversion),
                _pct(h.conversion),
                _pp(self.conversion_uplift),
                _rel(self.conversion_uplift_relative),
            ),
            ("revenue", _money(m.revenue), _money(h.revenue), "", ""),
            (
                "revenue per recipient",
                _money(m.revenue_per_recipient),
                _money(h.revenue_per_recipient),
                _money(self.revenue_uplift, signed=True),
                _rel(self.revenue_uplift_relative),
            ),
        ]

    def title(self) -> str:
        first, last = self.days or (self.since.date(), (self.until - timedelta(seconds=1)).date())
        return f"{self.campaign}: mailed vs holdout, {first} – {last}"

    def markdown(self) -> str:
        lines = [f"# {self.title()}", ""]
        lines += [
            f"Orders (not cancelled) within **{self.window_days} days** after the mail "
            "(for the holdout: after the run that held them out). Times UTC.",
            "",
            "| measure | mailed | holdout | uplift | relative |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [f"| {' | '.join(row)} |" for row in self.rows()]
        p = self.p_value
        lines += [
            "",
            f"- Conversion uplift p-value (two-proportion z-test): **{_p(p)}**"
            + ("" if p is None else " (significant at 5 %)" if p < 0.05 else " (not significant at 5 %)"),
            f"- Incremental revenue (uplift per recipient × mailed): {_money(self.incremental_revenue)}",
            f"- Coupons: {self.coupons_issued:,} issued with these mails, {self.coupons_used:,} used, "
            f"by {self.coupon_converters:,} customers (counted apart: no revenue link, not in the uplift)",
        ]
        if self.until + timedelta(days=self.window_days) > datetime.now(UTC).replace(tzinfo=None):
            lines += ["", "> The last mails' windows are still open: their orders may still come."]
        if not self.holdout.recipients:
            lines += ["", "> No holdout group in this period: set `holdout_percent` in the campaign file."]
        elif min(self.mailed.recipients, self.holdout.recipients) < 100:
            lines += ["", "> Small groups: treat the uplift as a rough indication."]
        return "\n".join(lines)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _relative(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else (a - b) / b


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f} %"


def _pp(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.2f} pp"


def _rel(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} %"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _money(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def two_proportion_p_value(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of H0 p1 == p2 (pooled two-proportion z-test); None if undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x1 / n1 - x2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


def assign_groups(mails: pd.DataFrame) -> pd.DataFrame:
    """Mail rows with one group per customer: anyone mailed once counts as mailed."""
    mailed_ids = mails.loc[mails["group"] == MAILED, "customer_id"].unique()
    drop = (mails["group"] == HOLDOUT) & mails["customer_id"].isin(mailed_ids)
    return mails[~drop].reset_index(drop=True)


def attribute_orders(mails: pd.DataFrame, orders: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Orders attributed to a mail (or holdout row): same customer, not cancelled, created in
    [mailed_at, mailed_at + window_days). Each order once, to its earliest qualifying mail.
    Returns order_id, customer_id, group, created_at, total."""
    columns = ["order_id", "customer_id", "group", "created_at", "total"]
    if mails.empty or orders.empty:
        return pd.DataFrame(columns=columns)
    live = orders[orders["status"].astype(str) != "cancelled"]
    pairs = mails[["customer_id", "group", "mailed_at"]].merge(live, on="customer_id", how="inner")
    delta = pairs["created_at"] - pairs["mailed_at"]
    inside = (delta >= pd.Timedelta(0)) & (delta < pd.Timedelta(days=window_days))
    hits = pairs[inside].sort_values(["order_id", "mailed_at"]).drop_duplicates("order_id")
    return hits[columns].reset_index(drop=True)


def group_metrics(mails: pd.DataFrame, attributed: pd.DataFrame, group: str) -> GroupMetrics:
    people = mails.loc[mails["group"] == group, "customer_id"].nunique()
    hits = attributed[attributed["group"] == group]
    return GroupMetrics(
        recipients=int(people),
        converters=int(hits["customer_id"].nunique()),
        orders=len(hits),
        revenue=float(pd.to_numeric(hits["total"]).sum()) if len(hits) else 0.0,
    )


def measure(
    campaign: str,
    mails: pd.DataFrame,
    orders: pd.DataFrame,
    since: datetime,
    until: datetime,
    window_days: int = 7,
    coupons: pd.DataFrame | None = None,
    days: tuple[date, date] | None = None,
) -> CampaignResult:
    """The campaign's result from its ledger rows (`MAIL_COLUMNS`), the orders of those customers
    (`ORDER_COLUMNS`) and optionally its issued coupons (code, customer_id, used)."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    grouped = assign_groups(mails)
    attributed = attribute_orders(grouped, orders, window_days)
    coupons = coupons if coupons is not None else pd.DataFrame(columns=["code", "customer_id", "used"])
    used = coupons[coupons["used"].astype(bool)] if len(coupons) else coupons
    return CampaignResult(
        campaign=campaign,
        since=since,
        until=until,
        window_days=window_days,
        mailed=group_metrics(grouped, attributed, MAILED),
        holdout=group_metrics(grouped, attributed, HOLDOUT),
        coupons_issued=len(coupons),
        coupons_used=len(used),
        coupon_converters=int(used["customer_id"].nunique()) if len(used) else 0,
        days=days,
    )


# --- loaders ------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


DEFAULT_DAYS = 30


def default_period(today: date, since: date | None, until: date | None) -> tuple[date, date]:
    """[since, until] with defaults: until = today, since = the 30 days up to until."""
    last = until or today
    return since or last - timedelta(days=DEFAULT_DAYS - 1), last


def period_utc(since: date, until: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Shop-local days [since, until] (both inclusive) as naive UTC [start, end)."""
    if until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    return local_to_utc(since, tz), local_to_utc(until + timedelta(days=1), tz)


def load_mails(state: Engine, campaign: str, since: datetime, until: datetime) -> pd.DataFrame:
    """The campaign's `sent` and `holdout` ledger rows whose time falls in [since, until)."""
    led = send_ledger.c
    sent = select(led.message_key, led.customer_id, led.status, led.updated_at.label("at")).where(
        led.campaign == campaign, led.status == "sent", led.updated_at >= since, led.updated_at < until
    )
    held = select(led.message_key, led.customer_id, led.status, led.created_at.label("at")).where(
        led.campaign == campaign, led.status == "holdout", led.created_at >= since, led.created_at < until
    )
    with state.connect() as conn:
        rows = [*conn.execute(sent), *conn.execute(held)]
    frame = pd.DataFrame(rows, columns=["message_key", "customer_id", "status", "mailed_at"])
    frame["group"] = frame["status"].map({"sent": MAILED, "holdout": HOLDOUT})
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["mailed_at"] = pd.to_datetime(frame["mailed_at"])
    return frame[MAIL_COLUMNS]


def load_orders(
    shop_engine: Engine, customer_ids: Iterable[int], since: datetime, until: datetime
) -> pd.DataFrame:
    """Orders of these customers created in [since, until) (chunked IN queries)."""
    o = shop.orders.c
    ids = sorted({int(i) for i in customer_ids})
    rows: list[Any] = []
    with shop_engine.connect() as conn:
        for chunk in _chunks(ids):
            query = select(o.id, o.customer_id, o.created_at, o.total, o.status).where(
                o.customer_id.in_(chunk), o.created_at >= since, o.created_at < until
            )
            rows.extend(conn.execute(query))
    frame = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["total"] = pd.to_numeric(frame["total"].astype(float)) if len(frame) else frame["total"]
    return frame


def load_coupons(state: Engine, shop_engine: Engine, message_keys: Iterable[str]) -> pd.DataFrame:
    """Coupons issued with these mails (state DB) and whether the shop marks them used."""
    keys = sorted(set(message_keys))
    ic = issued_coupons.c
    issued: list[Any] = []
    with state.connect() as conn:
        for chunk in _chunks(keys):
            issued.extend(conn.execute(select(ic.code, ic.customer_id).where(ic.message_key.in_(chunk))))
    used: set[str] = set()
    codes = sorted(code for code, _ in issued)
    with shop_engine.connect() as conn:
        for chunk in _chunks(codes):
            query = select(shop.coupons.c.code).where(
                shop.coupons.c.code.in_(chunk), shop.coupons.c.used.is_(True)
            )
            used.update(conn.execute(query).scalars())
    return pd.DataFrame(
        [(code, int(cid), code in used) for code, cid in issued], columns=["code", "customer_id", "used"]
    )


def campaign_result(
    state: Engine,
    shop_engine: Engine,
    campaign: str,
    first_day: date,
    last_day: date,
    tz: ZoneInfo,
    window_days: int = 7,
) -> CampaignResult:
    """Load and measure: mails of the shop-local days [first_day, last_day], their orders up to
    `window_days` after the period."""
    since, until = period_utc(first_day, last_day, tz)
    mails = load_mails(state, campaign, since, until)
    orders = load_orders(shop_engine, mails["customer_id"], since, until + timedelta(days=window_days))
    sent_keys = mails.loc[mails["group"] == MAILED, "message_key"]
    coupons = load_coupons(state, shop_engine, sent_keys)
    return measure(campaign, mails, orders, since, until, window_days, coupons, (first_day, last_day))
