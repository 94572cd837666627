"""Convention: every campaign of the registry renders, in every language, on the demo shop."""

from __future__ import annotations

from datetime import date

import pytest

from config.settings import Settings
from shopmail import state_db
from shopmail.campaigns import get_campaign, registry
from shopmail.db import get_engine
from shopmail.demo_shop import generate_demo_shop
from shopmail.extract import extract
from shopmail.pipeline import MailComposer, product_lookup, select_recipients

AS_OF = date(2026, 11, 23)


@pytest.fixture(scope="module")
def shop_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('shop') / 'shop.sqlite'}"
    generate_demo_shop(url, customers=3000, seed=21, today=AS_OF)
    return url


@pytest.mark.parametrize("name", list(registry()))
def test_campaign_renders_for_every_variant_and_language(
    name: str, shop_url: str, settings: Settings
) -> None:
    campaign = get_campaign(name)
    frames = extract(get_engine(shop_url), campaign.datasets, AS_OF, settings.tz, campaign.history_days)
    state = state_db.upgrade(settings.state_url_resolved)
    selection = select_recipients(campaign, frames, AS_OF, settings, state, set())
    eligible = selection.eligible
    assert len(eligible) > 0, f"{name}: the demo shop gives no audience on {AS_OF}"
    composer = MailComposer(campaign, settings, product_lookup(frames["products"]))
    groups = [c for c in ("variant",) if c in eligible.columns]
    for language in ("ru", "en"):
        rows = eligible.assign(language=language)
        firsts = rows.groupby(groups).head(1) if groups else rows.head(1)
        for row in firsts.to_dict("records"):
            mail = composer.compose(row)
            assert mail.subject and "{{" not in mail.html and "{{" not in mail.text
            assert "utm_campaign=" in mail.html
            if campaign.marketing:
                assert "List-Unsubscribe" in mail.headers and "token=" in mail.text
