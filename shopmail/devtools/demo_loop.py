"""`shopmail demo` with the whole loop: a few shop days sent through the local SendGrid server, whose
recipients open, click, bounce, unsubscribe and report spam, its signed webhook into the real
feedback app, an A/B test of a subject, shoppers who order after some clicks, and the results.

Pieces (the CLI puts them together):

- `demo_env`: the settings a demo run sends with: the local server, the demo campaigns folder
  (the shipped campaign files plus `weekly_news_ab`, the weekly new-arrivals digest with an A/B test
  of two subjects and a short wait) and, where the shipped demo secrets or From address are still
  set, values of the demo's own (kept in the data folder: nothing leaves 127.0.0.1);
- `demo_engagement`: what the recipients do (rates of a healthy list; the A/B test's variant b is
  clicked twice as often as a);
- `plant_orders`: the demo's stand-in for shoppers: a share of the customers who clicked place an
  order (with items and status history) in the demo shop right after their click, so revenue
  after click has something to count;
- `results_rows`: one line per campaign of what its mails did.
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select

from config.settings import Settings, demo_values_in_use, env_name
from shopmail.campaigns import campaigns_folder
from shopmail.db import private_dir, private_file
from shopmail.devtools.sink_engagement import EngagementConfig, RateRule, Rates
from shopmail.shop import schema as shop
from shopmail.state.schema import mail_results
from shopmail.state.state_db import utcnow

AB_CAMPAIGN = "weekly_news_ab"
AB_SUBJECTS = {
    "a": ("Новинки недели", "New this week"),
    "b": ("Только что привезли: посмотрите первыми", "Just in: see them first"),
}
DEMO_SENDER = "news@demo-shop.test"
ORDER_SHARE = 0.25  # of the customers who clicked, this share orders


def demo_campaigns(folder: Path) -> Path:
    """The shop's campaign files plus the demo's A/B test, in `folder` (rewritten each demo)."""
    source = campaigns_folder()
    private_dir(folder)
    for old in folder.glob("*.toml"):
        old.unlink()
    for path in source.glob("*.toml"):
        shutil.copyfile(path, folder / path.name)
    if not (source / "new_arrivals.toml").exists():  # a shop without the digest: no A/B test
        return folder
    text = (source / "new_arrivals.toml").read_text(encoding="utf-8")
    text = text.replace('name = "new_arrivals"', f'name = "{AB_CAMPAIGN}"')
    text = text.replace('title = "Новинки недели"', 'title = "Новинки недели: A/B-тест темы"')
    text = text.replace('occasion_key = "new_arrivals:{issue}"', f'occasion_key = "{AB_CAMPAIGN}:{{issue}}"')
    text = text.replace('schedule = "0 12 * * 5"\n', "")
    variants = "".join(
        f'\n[[ab_test.variants]]\nname = "{name}"\nsubject = {{ ru = "{ru}", en = "{en}" }}\n'
        for name, (ru, en) in AB_SUBJECTS.items()
    )
    test = (
        '\n[ab_test]\nmode = "winner"\ntest_share = 0.3\nwait_hours = 0.006\nmetric = "click_rate"\n'
        "min_per_variant = 100\nrefresh_minutes = 0.1\n"
    )
    (folder / f"{AB_CAMPAIGN}.toml").write_text(text + test + variants, encoding="utf-8")
    return folder


def demo_env(settings: Settings) -> dict[str, str]:
    """SHOPMAIL_* values the demo runs with (see the module docstring), besides the local loop's."""
    env = {"SHOPMAIL_CAMPAIGNS_DIR": str(demo_campaigns(settings.data_dir / "demo_campaigns"))}
    stored = private_file(settings.data_dir / "demo_secrets.json")
    known = json.loads(stored.read_text() or "{}")
    for field in demo_values_in_use(settings, sender=True):
        if field == "sender_email":
            env[env_name(field)] = DEMO_SENDER
        else:
            known.setdefault(field, secrets.token_urlsafe(32))
            env[env_name(field)] = known[field]
    stored.write_text(json.dumps(known))
    return env


def demo_engagement() -> EngagementConfig:
    """A healthy list's recipients; in the A/B test, variant b is clicked twice as often."""
    base = Rates(bounce_hard=0.01, bounce_soft=0.004, blocked=0.003, open=0.3, machine=0.35, click=0.05)
    rules = tuple(
        RateRule({"campaign": AB_CAMPAIGN, "variant": name}, dataclasses.replace(base, click=click))
        for name, click in (("a", 0.04), ("b", 0.09))
    )
    return EngagementConfig(
        enabled=True, default=base, rules=rules, open_delay_s=1.0, click_delay_s=1.0, seed=7
    )


def plant_orders(shop_engine: Engine, state: Engine, since: datetime, seed: int = 7) -> int:
    """Orders of a share of the customers who clicked a mail queued since `since`, placed between
    their click and now (paid, one or two products); returns how many."""
    r = mail_results.c
    with state.connect() as conn:
        clicks = conn.execute(
            select(r.customer_id, func.min(r.clicked_at))
            .where(r.queued_at >= since, r.clicked_at.is_not(None), r.customer_id.is_not(None))
            .group_by(r.customer_id)
            .order_by(r.customer_id)
        ).all()
    rng = random.Random(seed)
    now = utcnow()
    with shop_engine.begin() as conn:
        products = conn.execute(select(shop.products.c.id, shop.products.c.price).limit(500)).all()
        next_id = int(conn.execute(select(func.max(shop.orders.c.id))).scalar() or 0) + 1
        orders: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for customer, clicked_at in clicks:
            if rng.random() >= ORDER_SHARE or not products:
                continue
            at = min(now, clicked_at + timedelta(seconds=rng.uniform(1, 120)))
            picked = rng.sample(products, k=min(len(products), rng.choice((1, 1, 2))))
            orders.append(
                {"id": next_id, "customer_id": customer, "status": "paid", "created_at": at,
                 "total": sum(float(price) for _, price in picked), "currency": "RUB"}
            )  # fmt: skip
            items += [
                {"order_id": next_id, "product_id": pid, "qty": 1, "price": price} for pid, price in picked
            ]
            history += [
                {"order_id": next_id, "status": "received", "changed_at": at},
                {"order_id": next_id, "status": "paid", "changed_at": at},
            ]
            next_id += 1
        if orders:
            conn.execute(insert(shop.orders), orders)
            conn.execute(insert(shop.order_items), items)
            conn.execute(insert(shop.order_status_history), history)
    return len(orders)


def campaigns_since(state: Engine, since: datetime) -> list[str]:
    """The campaigns with mails queued since `since`, most mails first."""
    r = mail_results.c
    query = (
        select(r.campaign, func.count())
        .where(r.queued_at >= since)
        .group_by(r.campaign)
        .order_by(func.count().desc(), r.campaign)
    )
    with state.connect() as conn:
        return [campaign for campaign, _ in conn.execute(query)]
