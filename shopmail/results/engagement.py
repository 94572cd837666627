"""What a campaign's mails did: delivery, bounces, opens, clicks (per link), unsubscribes, spam
reports, and the revenue of orders placed after a click.

Which mails: the campaign's `mail_results` rows (shopmail/state/engagement.py) whose ledger time of
`sent` (settled onto the row) falls in the period; what became of each comes from the SendGrid event
webhook, folded into that row as events arrive. Rates are per delivered mail:

- **open rate**: mails a person opened (an `open` without `sg_machine_open`, or any click) over
  delivered mails. Machine opens (Apple Mail Privacy Protection opens every mail by itself) are
  counted apart and left out, unless asked for (`with_machine_opens`);
- **click rate**: mails with at least one click on a link of the mail (not the unsubscribe link);
- unsubscribe and spam-report rates; bounces by kind (hard, soft, blocked) over sent mails;
- **time to first click**: median time from the send to the mail's first click.

**Revenue after click** (last-click attribution): an order (not cancelled) belongs to the mail whose
link the customer clicked last before it, if that click was at most `window_days` before the order,
whatever the campaign. It says what the mails touched, not what they caused: the holdout uplift
(shopmail/results/attribution.py) compares the mailed with a random group that got nothing.

Every count is one grouped query over `mail_results` (indexed on campaign and send time, no join);
clicks and orders are read for clicking customers only.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine, and_, case, func, select

from shopmail.shop import schema as shop
from shopmail.state.engagement import BOUNCE_BLOCKED, BOUNCE_HARD, BOUNCE_SOFT, settle_sent
from shopmail.state.schema import mail_results, provider_events

if TYPE_CHECKING:  # pandas loads lazily: `shopmail history` uses only the light part
    import pandas as pd

DIMENSIONS = ("variant", "test_phase", "language", "segment", "run")
DIMENSION_WORDS = {
    "variant": "variant",
    "test_phase": "A/B phase",
    "language": "language",
    "segment": "segment",
    "run": "run",
}
COUNTS = (
    "sent",
    "delivered",
    "deferred",
    "hard_bounces",
    "soft_bounces",
    "blocked",
    "dropped",
    "opened",
    "machine_opened",
    "opened_any",
    "clicked",
    "unsubscribed",
    "spam_reports",
)
PHASE_WORDS = {"test": "test group", "winner": "winner to the rest", "split": "continuous split"}
MACHINE_OPENS_NOTE = (
    "Open rates leave out machine opens (Apple Mail Privacy Protection opens every mail by itself): "
    "they count people who opened or clicked."
)
_CHUNK = 2000
CLOCK_SKEW = timedelta(days=1)  # SendGrid's event times vs ours: clicks are read from this before the period
SETTLE_LOOKBACK = timedelta(days=3)  # mails queued this long before a period may have been sent in it


@dataclass
class Engagement:
    """Counts of one group of mails (`label`: dimension -> value) and its rates."""

    label: dict[str, str]
    sent: int = 0
    delivered: int = 0
    deferred: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    blocked: int = 0
    dropped: int = 0
    opened: int = 0  # by a person (or clicked)
    machine_opened: int = 0
    opened_any: int = 0  # by a person or a machine
    clicked: int = 0
    unsubscribed: int = 0
    spam_reports: int = 0
    first_click_minutes: float | None = None  # median time from the send to the first click
    orders_after_click: int = 0
    revenue_after_click: float = 0.0

    def rate(self, count: int, of: int | None = None) -> float | None:
        base = self.delivered if of is None else of
        return count / base if base else None

    @property
    def open_rate(self) -> float | None:
        return self.rate(self.opened)

    @property
    def click_rate(self) -> float | None:
        return self.rate(self.clicked)

    @property
    def bounces(self) -> int:
        return self.hard_bounces + self.soft_bounces + self.blocked

    @property
    def revenue_per_mail(self) -> float | None:
        return self.revenue_after_click / self.sent if self.sent else None

    def merge(self, other: Engagement) -> None:
        for name in (*COUNTS, "orders_after_click"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.revenue_after_click += other.revenue_after_click


@dataclass
class LinkClicks:
    """Clicks on one link: `place` is the button or block (utm_content), `page` the address without
    its UTM tags, `product` the shop's product at that address (if any)."""

    place: str
    page: str
    clicks: int = 0
    mails: int = 0  # mails with at least one click on it
    product: str = ""
    by_variant: dict[str, int] = field(default_factory=dict)  # variant -> mails clicking it


@dataclass
class EngagementReport:
    campaign: str
    since: datetime
    until: datetime
    window_days: int
    by: tuple[str, ...]
    total: Engagement
    groups: list[Engagement]
    links: list[LinkClicks]
    with_machine_opens: bool = False


# --- counting ----------------------------------------------------------------------------------


def _dimension(name: str) -> Any:
    r = mail_results.c
    if name == "variant":
        return func.coalesce(r.test_variant, r.variant, "").label("variant")
    if name == "run":
        return func.coalesce(r.run_id, "").label("run")
    return func.coalesce(r[name], "").label(name)


def _sent_mails(campaign: str, since: datetime, until: datetime) -> Any:
    """The campaign's mails sent in [since, until) (settled: `settle_sent`)."""
    r = mail_results.c
    return and_(r.campaign == campaign, r.sent_at >= since, r.sent_at < until)


def settle(state: Engine, campaign: str, since: datetime) -> None:
    """Settle what the last sends left unsettled (a run that crashed before settling, the poller)."""
    settle_sent(state, campaign, since - SETTLE_LOOKBACK)


CLICK_COLUMNS = ["customer_id", "clicked_at", "message_key", "url", "sent_at", "first_click", *DIMENSIONS]


def campaign_clicks(state: Engine, campaign: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Every click on the campaign's mails sent in [since, until), with its mail's send time, first
    click and dimensions: one query through the partial click index, read once by the engagement
    counts (time to first click), the links and the revenue after click."""
    import pandas as pd

    e, r = provider_events.c, mail_results.c
    query = (
        select(
            e.customer_id,
            e.occurred_at,
            e.message_key,
            e.url,
            r.sent_at,
            r.clicked_at,
            *(_dimension(name) for name in DIMENSIONS),
        )
        .select_from(provider_events.join(mail_results, r.message_key == e.message_key))
        .where(
            _sent_mails(campaign, since, until),
            e.campaign == campaign,
            e.event == "click",
            e.occurred_at >= since - CLOCK_SKEW,
        )
    )
    with state.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=CLICK_COLUMNS)
    for column in ("clicked_at", "sent_at", "first_click"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def count_engagement(
    state: Engine,
    campaign: str,
    since: datetime,
    until: datetime,
    by: Sequence[str] = (),
    with_machine_opens: bool = False,
    all_click_minutes: list[float] | None = None,
    clicks: pd.DataFrame | None = None,
) -> list[Engagement]:
    """One `Engagement` per group of the `by` dimensions (none: one for all mails) of the campaign's
    mails sent in [since, until) (naive UTC); `all_click_minutes` gets every time to first click
    (`clicks`: `campaign_clicks` if already read)."""
    unknown = set(by) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"unknown dimensions {sorted(unknown)}; known: {', '.join(DIMENSIONS)}")
    r = mail_results.c
    dims = [_dimension(name) for name in by]
    person = (r.opened_at.is_not(None)) | (r.clicked_at.is_not(None))
    anyone = person | r.machine_opened_at.is_not(None)
    counts = [
        func.count().label("sent"),
        func.count(r.delivered_at).label("delivered"),
        func.count(r.deferred_at).label("deferred"),
        func.sum(case((r.bounce == BOUNCE_HARD, 1), else_=0)).label("hard_bounces"),
        func.sum(case((r.bounce == BOUNCE_SOFT, 1), else_=0)).label("soft_bounces"),
        func.sum(case((r.bounce == BOUNCE_BLOCKED, 1), else_=0)).label("blocked"),
        func.count(r.dropped_at).label("dropped"),
        func.sum(case((anyone if with_machine_opens else person, 1), else_=0)).label("opened"),
        func.count(r.machine_opened_at).label("machine_opened"),
        func.sum(case((anyone, 1), else_=0)).label("opened_any"),
        func.count(r.clicked_at).label("clicked"),
        func.count(r.unsubscribed_at).label("unsubscribed"),
        func.count(r.spam_reported_at).label("spam_reports"),
    ]
    query = select(*dims, *counts).where(_sent_mails(campaign, since, until))
    if dims:
        query = query.group_by(*dims)
    with state.connect() as conn:
        rows = conn.execute(query).mappings().all()
    clicks = campaign_clicks(state, campaign, since, until) if clicks is None else clicks
    first = clicks.dropna(subset=["first_click"]).drop_duplicates("message_key")
    waited = ((first["first_click"] - first["sent_at"]).dt.total_seconds() / 60).clip(lower=0)
    minutes: dict[tuple, list[float]] = {}
    for label, value in zip(
        zip(*(first[name] for name in by), strict=True) if by else [()] * len(first), waited, strict=True
    ):
        minutes.setdefault(tuple(label), []).append(float(value))
    if all_click_minutes is not None:
        all_click_minutes.extend(float(v) for v in waited)
    found = []
    for row in rows:
        label = tuple(str(row[name]) for name in by)
        values = {name: int(row[name] or 0) for name in COUNTS}
        times = minutes.get(label)
        found.append(
            Engagement(
                dict(zip(by, label, strict=True)),
                **values,
                first_click_minutes=statistics.median(times) if times else None,
            )
        )
    return sorted(found, key=lambda e: tuple(e.label.values()))


# --- links -------------------------------------------------------------------------------------


def split_link(url: str) -> tuple[str, str]:
    """(place, page) of a clicked link: its `utm_content` (the button or block, e.g. `cta`,
    `related`) and the address without UTM tags."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    place = next((v for k, v in query if k == "utm_content"), "")
    kept = [(k, v) for k, v in query if not k.startswith("utm_")]
    return place, urlunsplit(parts._replace(query=urlencode(kept), fragment=""))


def count_links(
    state: Engine,
    campaign: str,
    since: datetime,
    until: datetime,
    unsubscribe_prefix: str | None = None,
    clicks: pd.DataFrame | None = None,
) -> list[LinkClicks]:
    """Clicks per link of the campaign's mails sent in [since, until): most clicked first; a click
    on the unsubscribe link is its own row (`place` "unsubscribe")."""
    clicks = campaign_clicks(state, campaign, since, until) if clicks is None else clicks
    clicks = clicks.dropna(subset=["url"])
    links: dict[tuple[str, str], LinkClicks] = {}
    per_url = clicks.groupby(["url", "variant"]).agg(
        clicks=("message_key", "size"), mails=("message_key", "nunique")
    )
    for (url, group), row in per_url.iterrows():
        place, page = ("unsubscribe", url) if url == unsubscribe_prefix else split_link(url)
        link = links.setdefault((place, page), LinkClicks(place, page))
        link.clicks += int(row["clicks"])
        link.mails += int(row["mails"])  # a mail clicking one page under two UTM spellings counts twice
        if group:
            link.by_variant[group] = link.by_variant.get(group, 0) + int(row["mails"])
    return sorted(links.values(), key=lambda link: (-link.mails, link.place, link.page))


def name_products(shop_engine: Engine, links: list[LinkClicks]) -> None:
    """Fill in `product` for links whose page is a product's address in the shop."""
    pages = sorted({link.page for link in links})
    names: dict[str, str] = {}
    with shop_engine.connect() as conn:
        for start in range(0, len(pages), _CHUNK):
            chunk = pages[start : start + _CHUNK]
            query = select(shop.products.c.url, shop.products.c.name).where(shop.products.c.url.in_(chunk))
            names.update((url, name) for url, name in conn.execute(query))
    for link in links:
        link.product = names.get(link.page, "")


# --- revenue after click -------------------------------------------------------------------------


def competing_clicks(
    state: Engine,
    own: pd.DataFrame,
    since: datetime,
    until: datetime,
    unsubscribe_prefix: str | None = None,
) -> pd.DataFrame:
    """The clicks that may win an order of a customer who clicked one of `own` (`campaign_clicks`):
    `own` itself plus every other click of those customers in [since, until), read from the events
    alone (any campaign, also the campaign's mails of other periods; no join: a month holds millions
    of mails). Columns: customer_id, clicked_at, message_key, variant, sent_at (NaT: not `own`)."""
    import pandas as pd

    e = provider_events.c
    where = [e.event == "click", e.occurred_at >= since, e.occurred_at < until, e.customer_id.is_not(None)]
    if unsubscribe_prefix:
        where.append(e.url != unsubscribe_prefix)
        own = own[own["url"] != unsubscribe_prefix]
    clickers, keys = set(own["customer_id"].tolist()), set(own["message_key"].tolist())
    with state.connect() as conn:
        rows = [
            row
            for row in conn.execute(select(e.customer_id, e.occurred_at, e.message_key).where(*where))
            if row[0] in clickers and row[2] not in keys
        ]
    columns = ["customer_id", "clicked_at", "message_key", "variant", "sent_at"]
    theirs = pd.DataFrame(rows, columns=columns[:3]).assign(variant="", sent_at=pd.NaT)
    frame = pd.concat([own[columns], theirs], ignore_index=True) if len(theirs) else own[columns].copy()
    frame["customer_id"] = frame["customer_id"].astype("int64")
    frame["clicked_at"] = pd.to_datetime(frame["clicked_at"])
    frame["sent_at"] = pd.to_datetime(frame["sent_at"])
    return frame


def last_click_orders(clicks: pd.DataFrame, orders: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Each order (not cancelled) with the customer's last click before it, if that click was at most
    `window_days` earlier (last-click attribution). Returns order_id, customer_id, created_at, total,
    and the click's message_key, variant, sent_at (NaT: a click on another mail than the report's)."""
    import pandas as pd

    columns = ["order_id", "customer_id", "created_at", "total", "message_key", "variant", "sent_at"]
    if clicks.empty or orders.empty:
        return pd.DataFrame(columns=columns)
    live = orders[orders["status"].astype(str) != "cancelled"].copy()
    live["created_at"] = pd.to_datetime(live["created_at"]).astype("datetime64[ns]")
    ordered_clicks = clicks.assign(clicked_at=clicks["clicked_at"].astype("datetime64[ns]"))
    matched = pd.merge_asof(
        live.sort_values("created_at"),
        ordered_clicks.sort_values("clicked_at"),
        left_on="created_at",
        right_on="clicked_at",
        by="customer_id",
        direction="backward",
        tolerance=pd.Timedelta(days=window_days),
    )
    return matched.dropna(subset=["message_key"])[columns].reset_index(drop=True)


def mail_labels(state: Engine, keys: Iterable[str], by: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each mail's values of the `by` dimensions."""
    wanted = sorted(set(keys))
    dims = [_dimension(name) for name in by]
    found: dict[str, tuple[str, ...]] = {}
    with state.connect() as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            query = select(mail_results.c.message_key, *dims)
            for key, *values in conn.execute(query.where(mail_results.c.message_key.in_(chunk))):
                found[key] = tuple(str(v) for v in values)
    return found


def add_revenue(state: Engine, groups: list[Engagement], attributed: pd.DataFrame, by: Sequence[str]) -> None:
    """Add the last-click orders of the campaign's mails (`sent_at` known) to the groups they fall in."""
    import pandas as pd

    mine = attributed.dropna(subset=["sent_at"])
    if mine.empty:
        return
    labels = mail_labels(state, mine["message_key"], by) if by else {}
    index = {tuple(g.label.get(name, "") for name in by): g for g in groups}
    for key, total in zip(mine["message_key"].tolist(), pd.to_numeric(mine["total"]).tolist(), strict=True):
        group = index.get(labels.get(key, ()) if by else ())
        if group is not None:
            group.orders_after_click += 1
            group.revenue_after_click += float(total)


def engagement_report(
    state: Engine,
    shop_engine: Engine | None,
    campaign: str,
    since: datetime,
    until: datetime,
    *,
    by: Sequence[str] = ("variant",),
    window_days: int = 7,
    unsubscribe_prefix: str | None = None,
    with_machine_opens: bool = False,
) -> EngagementReport:
    """Counts, rates, links and revenue after click of the campaign's mails sent in [since, until)."""
    from shopmail.results.attribution import load_orders

    by = tuple(by)
    settle(state, campaign, since)
    clicks = campaign_clicks(state, campaign, since, until)
    minutes: list[float] = []
    groups = count_engagement(state, campaign, since, until, by, with_machine_opens, minutes, clicks)
    total = Engagement({})
    for group in groups:
        total.merge(group)
    total.first_click_minutes = statistics.median(minutes) if minutes else None
    links = count_links(state, campaign, since, until, unsubscribe_prefix, clicks)
    if shop_engine is not None:
        name_products(shop_engine, links)
        horizon = until + timedelta(days=window_days)
        competing = competing_clicks(
            state, clicks, since - timedelta(days=window_days), horizon, unsubscribe_prefix
        )
        orders = load_orders(shop_engine, competing["customer_id"].unique(), since, horizon)
        attributed = last_click_orders(competing, orders, window_days)
        add_revenue(state, groups, attributed, by)
        add_revenue(state, [total], attributed, ())
    return EngagementReport(campaign, since, until, window_days, by, total, groups, links, with_machine_opens)


def report_for_days(
    state: Engine,
    shop_engine: Engine | None,
    campaign: str,
    first_day: Any,
    last_day: Any,
    tz: Any,
    **options: Any,
) -> EngagementReport:
    """`engagement_report` of the mails queued on the shop-local days [first_day, last_day]."""
    from shopmail.results.attribution import period_utc

    since, until = period_utc(first_day, last_day, tz)
    return engagement_report(state, shop_engine, campaign, since, until, **options)


def engagement_of_runs(state: Engine, run_ids: Sequence[str]) -> dict[str, Engagement]:
    """Delivery, opens and clicks of the mails each run sent (`shopmail history`, campaign-history)."""
    r = mail_results.c
    wanted = sorted(set(run_ids))
    person = (r.opened_at.is_not(None)) | (r.clicked_at.is_not(None))
    query = select(
        r.run_id,
        func.count(),
        func.count(r.delivered_at),
        func.sum(case((person, 1), else_=0)),
        func.count(r.clicked_at),
        func.count(r.unsubscribed_at),
    )
    found: dict[str, Engagement] = {}
    for start in range(0, len(wanted), _CHUNK):
        settle_sent(state, run_ids=wanted[start : start + _CHUNK])
    with state.connect() as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = conn.execute(query.where(r.run_id.in_(chunk), r.sent_at.is_not(None)).group_by(r.run_id))
            for run, sent, delivered, opened, clicked, unsubscribed in rows:
                found[run] = Engagement(
                    {"run": run},
                    sent=int(sent),
                    delivered=int(delivered),
                    opened=int(opened or 0),
                    clicked=int(clicked),
                    unsubscribed=int(unsubscribed),
                )
    return found
