"""Convention: every campaign of the registry renders, in every language, on the demo shop."""

from __future__ import annotations

from datetime import date

import pytest

from config.settings import Settings
from shopmail.campaigns import get_campaign, registry
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import validate_mail_send
from shopmail.mail.samples import sample_rows
from shopmail.mailer.sendgrid_api import sendgrid_payload
from shopmail.run.composer import MailComposer
from shopmail.run.pipeline import product_lookup, select_recipients
from shopmail.shop.extract import extract
from shopmail.state import state_db

AS_OF = date(2026, 11, 23)
RUN_DAYS = {"holiday": date(2026, 3, 8)}  # campaigns with an audience only on certain days
HOSTILE_NAMES = {"first_name": "Анна;\r\nBcc: x@evil.example", "last_name": "Петрова,\x00 \u2028мл."}


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> dict[date, str]:
    """Demo shops by their 'today', generated on first use."""
    return {}


def _shop_for(shops: dict[date, str], day: date, tmp_path_factory: pytest.TempPathFactory) -> str:
    if day not in shops:
        url = f"sqlite:///{tmp_path_factory.mktemp('shop') / f'shop_{day}.sqlite'}"
        generate_demo_shop(url, customers=3000, seed=21, today=day)
        shops[day] = url
    return shops[day]


@pytest.mark.parametrize("name", list(registry()))
def test_campaign_renders_for_every_variant_and_language(
    name: str, shops: dict[date, str], tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> None:
    campaign = get_campaign(name)
    day = RUN_DAYS.get(name, AS_OF)
    shop_url = _shop_for(shops, day, tmp_path_factory)
    frames = extract(get_engine(shop_url), campaign.datasets, day, settings.tz, campaign.history_days)
    state = state_db.upgrade(settings.state_url_resolved)
    selection = select_recipients(campaign, frames, day, settings, state, set())
    eligible = selection.eligible
    assert len(eligible) > 0, f"{name}: the demo shop gives no audience on {day}"
    products = product_lookup(frames["products"]) if "products" in frames else {}  # as flows/steps.py
    composer = MailComposer(campaign, settings, products)
    # the campaign's sample data (gallery, browser test, length check) has every column the templates read
    sample = sample_rows(campaign.template, settings.templates_dir)[0]
    read = {n for lang in ("ru", "en") for n in composer.shape(lang).by_row} & set(eligible.columns)
    assert read <= set(sample), f"{name}: sample.toml lacks {sorted(read - set(sample))}"
    groups = [c for c in ("variant",) if c in eligible.columns]
    for language in ("ru", "en"):
        rows = eligible.assign(language=language)
        firsts = rows.groupby(groups).head(1) if groups else rows.head(1)
        for row in firsts.to_dict("records"):
            mail = composer.compose(row)
            assert mail.subject and "{{" not in mail.html and "{{" not in mail.text
            assert "utm_campaign=" in mail.html
            for url in settings.social_links.values():  # the branded footer: social links
                assert url in mail.html and url in mail.text
            if campaign.marketing:
                assert "List-Unsubscribe" in mail.headers and "token=" in mail.text
            # SendGrid must accept the payload (a refusal is a permanent `rejected`), hostile names too
            for sample in (mail, composer.compose({**row, **HOSTILE_NAMES})):
                assert validate_mail_send(sendgrid_payload(sample)) == [], (name, language)
            # a link carrying a secret (besides the unsubscribe link) must not go through click tracking
            unsubscribe = composer.context(row)["unsubscribe_url"] or "\0"
            html = mail.html.replace(unsubscribe.replace("&", "&amp;"), "").replace(unsubscribe, "")
            assert mail.click_tracking is campaign.click_tracking
            assert "token=" not in html or not campaign.click_tracking, f"{name}: set click_tracking = false"
