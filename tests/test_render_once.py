"""Render once, personalize per recipient: the shared path gives byte-identical mails.

For every campaign and both languages, 1,000+ recipients of the demo shop are composed both ways:
per recipient (`MailComposer.compose`) and in groups from one shared body plus substitutions
(`compose_many`, then the substitution as the outbox applies it). Every field of every mail
(subject, text, HTML, headers, custom args, recipient) must be equal. Templates that do more with a
personal value than print it fall back to per-recipient rendering, and still give the right mail.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from config.settings import Settings
from shopmail.campaigns import get_campaign, registry
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import validate_mail_send
from shopmail.mailer.base import apply_substitutions
from shopmail.mailer.sendgrid_api import group_for_requests, merged_payload
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import product_lookup, select_recipients
from shopmail.shop.extract import extract
from shopmail.state import ledger, state_db

AS_OF = date(2026, 11, 23)
RUN_DAYS = {"holiday": date(2026, 3, 8)}
SAMPLE = 1000
NOW = datetime(2026, 11, 23, 9, 30)
# names a real base holds: HTML and URL specials, token syntax, odd spaces, empty parts
NASTY = [
    ("O'Brien", "Smith & Sons"),
    ("<b>Анна</b>", ""),
    ("", "Петрова"),
    ("", ""),
    ("Анна Мария", "фон Берг"),
    ("Анна\u00a0Мария", "X"),
    ("-smv.customer.last_name.t-", "Spoof"),
    ('Zoë "Z"', "Ünal"),
    ("%20?x=1&y=2", "#frag"),
]
MASS_LIKE = {"sale", "new_arrivals", "holiday"}  # the same content for the whole base


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> dict[date, str]:
    found: dict[date, str] = {}
    for day in {AS_OF, *RUN_DAYS.values()}:
        url = f"sqlite:///{tmp_path_factory.mktemp('shop') / f'shop_{day}.sqlite'}"
        generate_demo_shop(url, customers=3000, seed=21, today=day)
        found[day] = url
    return found


def _sample(campaign_name: str, eligible: pd.DataFrame, customers: pd.DataFrame) -> list[dict]:
    """At least SAMPLE recipients: the eligible rows, then the same rows (same shared data) for other
    customers of the shop, with the nasty names spread through."""
    people = customers[["id", "email", "first_name", "last_name"]].fillna("").to_dict("records")
    base = eligible.to_dict("records")
    rows: list[dict] = []
    for n, (row, person) in enumerate(zip(itertools.cycle(base), itertools.cycle(people), strict=False)):
        if n >= max(SAMPLE, len(base)):
            break
        if n >= len(base):
            row = {**row, "customer_id": int(person["id"]), "email": person["email"]}
            row.update(first_name=person["first_name"], last_name=person["last_name"])
        if n % 37 == 5:
            row["first_name"], row["last_name"] = NASTY[(n // 37) % len(NASTY)]
        occasion = str(row["occasion_key"])
        rows.append({**row, "message_key": ledger.message_key(campaign_name, occasion, row["customer_id"])})
    return rows


@pytest.mark.parametrize("name", list(registry()))
def test_shared_bodies_give_the_same_mails_as_rendering_each(
    name: str, shops: dict[date, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_db, "utcnow", lambda: NOW)  # one clock for both paths (coupons, send_at)
    campaign = get_campaign(name)
    day = RUN_DAYS.get(name, AS_OF)
    frames = extract(get_engine(shops[day]), campaign.datasets, day, settings.tz, campaign.history_days)
    state = state_db.upgrade(settings.state_url_resolved)
    eligible = select_recipients(campaign, frames, day, settings, state, set()).eligible
    assert len(eligible) > 0
    products = product_lookup(frames["products"]) if "products" in frames else {}
    for language in ("ru", "en"):
        rows = [{**r, "language": language} for r in _sample(name, eligible, frames["customers"])]
        assert len(rows) >= SAMPLE
        shared = MailComposer(campaign, settings, products)
        mails, errors = shared.compose_many(rows)
        assert errors == [] and len(mails) == len(rows)
        single = MailComposer(campaign, settings, products)
        for row, mail in zip(rows, mails, strict=True):
            assert mail.personalized() == single.compose(row), (name, language, row["customer_id"])
        assert shared.unshared is None, shared.unshared
        if name in MASS_LIKE:  # the whole sample shares a handful of bodies
            assert shared.stats["shared"] >= 0.95 * len(rows), dict(shared.stats)
            together = [m for m in mails if m.substitutions]  # the few odd names go alone
            requests = group_for_requests(together)
            assert len(requests) <= len(together) / 500 + 4, len(requests)
            for group in requests:  # what SendGrid receives is valid, and gives each their own mail
                payload = merged_payload(group)
                assert validate_mail_send(payload) == []
                for mail, part in zip(group, payload["personalizations"], strict=True):
                    subs = part.get("substitutions", {})
                    html = next(c["value"] for c in payload["content"] if c["type"] == "text/html")
                    assert apply_substitutions(html, subs) == mail.personalized().html


# --- templates that cannot be shared ------------------------------------------------------------

LAYOUT = "{% block content %}{% endblock %}"


def _probe(tmp_path: Path, html: str, subject: str = "Hi") -> Path:
    folder = tmp_path / "templates"
    for language in ("ru", "en"):
        part = folder / "probe" / language
        part.mkdir(parents=True)
        (part / "subject.j2").write_text(subject)
        (part / "body.html.j2").write_text(html)
        (part / "body.txt.j2").write_text("{{ customer.first_name }} {{ unsubscribe_url }}")
    return folder


def _rows(names: list[str]) -> list[dict]:
    return [
        {
            "customer_id": i + 1,
            "email": f"c{i + 1}@mail.test",
            "first_name": name,
            "last_name": "",
            "language": "ru",
            "occasion_key": "probe:1",
            "message_key": ledger.message_key("sale", "probe:1", i + 1),
        }
        for i, name in enumerate(names)
    ]


@pytest.mark.parametrize(
    ("html", "unshared"),
    [
        ("{% if customer.first_name == 'Анна' %}VIP{% endif %} {{ customer.first_name }}", True),
        ("{{ customer.first_name | length }}", True),
        ("{{ customer.first_name.upper() }}", True),
        ("{{ customer.first_name | upper }}", True),  # caught by the proof render
        ("{{ customer.first_name | safe }}", True),  # raw vs escaped: caught with O'Brien
        ("{{ customer.first_name | urlencode }}", True),  # caught with a Cyrillic name
        ("{{ customer.first_name }}, {{ unsubscribe_url }}", False),
        ("{% if customer.first_name %}{{ customer.first_name }}{% else %}Гость{% endif %}", False),
    ],
)
def test_templates_inspecting_personal_values_fall_back_and_stay_right(
    html: str, unshared: bool, tmp_path: Path, settings: Settings
) -> None:
    folder = _probe(tmp_path, html)
    campaign = get_campaign("sale").model_copy(update={"template": "probe"})
    custom = settings.model_copy(update={"templates_dir": folder})
    names = ["Иван", "Олег", "", "Анна", "O'Brien", "Пётр", "", "Анна", "Zoë"] * 3
    rows = _rows(names)
    composer = MailComposer(campaign, custom, {})
    mails, errors = composer.compose_many(rows)
    assert errors == []
    single = MailComposer(campaign, custom, {})
    assert [m.personalized() for m in mails] == [single.compose(r) for r in rows]
    assert (composer.unshared is not None) is unshared, composer.unshared
    if not unshared:
        assert composer.stats["shared"] >= len(rows) - 2


def test_a_shared_body_holds_no_personal_value(tmp_path: Path, settings: Settings) -> None:
    """The shared body is rendered with placeholders only: no recipient's name, address or link."""
    folder = _probe(tmp_path, "{{ customer.first_name }} {{ customer.last_name }} {{ unsubscribe_url }}")
    campaign = get_campaign("sale").model_copy(update={"template": "probe"})
    composer = MailComposer(campaign, settings.model_copy(update={"templates_dir": folder}), {})
    rows = _rows(["Иван", "Олег", "Анна", "Пётр", "Мария"])
    mails, _ = composer.compose_many(rows)
    assert len({(m.html, m.text, m.subject) for m in mails}) == 1
    body = mails[0].html + mails[0].text
    for row, mail in zip(rows, mails, strict=True):
        assert row["first_name"] not in body and "token=" not in body
        assert row["first_name"] in mail.personalized().html
        others = [r["first_name"] for r in rows if r is not row]
        assert not any(other in mail.personalized().html for other in others)


def test_one_pass_substitution_never_rescans_values() -> None:
    subs = {"-a-": "-b-", "-b-": "X", "-ab-": "long key first"}
    assert apply_substitutions("-a- -b- -ab-", subs) == "-b- X long key first"


@pytest.mark.parametrize(
    "base",
    [
        "https://shop.example/unsubscribe",
        "https://shop.example/u?lang=ru&src=mail",  # '&' is escaped in HTML: proved by a canary
        "https://shop.example/u/'x'",
        "https://shop.example/-smv.unsubscribe_url.t-",  # token syntax in the fixed part
    ],
)
def test_unsubscribe_links_of_any_base_give_the_same_mails(
    base: str, tmp_path: Path, settings: Settings
) -> None:
    """The composer trusts the links it builds itself (their token is base64url and '.'): whatever the
    configured base holds, the shared path gives the full render's bytes."""
    folder = _probe(
        tmp_path, "<a href='{{ unsubscribe_url }}'>{{ unsubscribe_url }}</a> {{ customer.first_name }}"
    )
    campaign = get_campaign("sale").model_copy(update={"template": "probe"})
    custom = settings.model_copy(update={"templates_dir": folder, "unsubscribe_url": base})
    rows = _rows(["Иван", "Олег", "Анна", "Пётр", "Мария", "Zoë"] * 2)
    composer = MailComposer(campaign, custom, {})
    mails, errors = composer.compose_many(rows)
    assert errors == []
    single = MailComposer(campaign, custom, {})
    assert [m.personalized() for m in mails] == [single.compose(r) for r in rows]
    assert all(m.headers["List-Unsubscribe"].startswith(f"<{base}") for m in mails)
    assert (composer.stats["shared"] == 0) is ("-smv." in base), dict(composer.stats)
