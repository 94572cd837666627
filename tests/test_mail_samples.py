"""The sample data (email_templates/<campaign>/sample.toml, _samples/common.toml) stays what the
gallery, the browser test and the length check need: the longest names the demo shop can produce, its
highest prices, and a sample for every campaign of the registry."""

from __future__ import annotations

from faker.providers.person.ru_RU import Provider as RussianNames

from shopmail.campaigns import registry
from shopmail.devtools.demo_shop import CATEGORIES
from shopmail.mail.rendering import TEMPLATES_DIR
from shopmail.mail.samples import sample_products, sample_rows


def _longest_demo_product_name() -> int:
    return max(
        len(
            c.template.format(
                kind=max(c.kinds, key=len),
                brand=max(c.brands, key=len),
                model="Z98 Plus",
                detail=max(c.details, key=len),
            )
        )
        for c in CATEGORIES
    )


def test_the_sample_customer_has_the_longest_names_the_demo_can_draw() -> None:
    row = sample_rows("welcome", TEMPLATES_DIR)[0]
    firsts = RussianNames.first_names_female + RussianNames.first_names_male
    lasts = RussianNames.last_names_female + RussianNames.last_names_male
    assert len(row["first_name"]) >= max(map(len, firsts))
    assert len(row["last_name"]) >= max(map(len, lasts))


def test_the_sample_products_have_the_longest_name_and_six_digit_prices() -> None:
    products = sample_products(TEMPLATES_DIR)
    assert max(len(p["name"]) for p in products.values()) >= _longest_demo_product_name()
    assert min(p["price"] for p in products.values()) >= 999_990  # the demo's prices stay under a million
    assert all(
        p["url"].startswith("https://") and p["image_url"].startswith("https://") for p in products.values()
    )


def test_every_campaign_has_sample_mails_naming_known_products() -> None:
    products = sample_products(TEMPLATES_DIR)
    for campaign in registry().values():
        rows = sample_rows(campaign.template, TEMPLATES_DIR)
        assert rows, campaign.name
        for row in rows:
            ids = [i for value in row.values() if isinstance(value, list) for i in value]
            assert set(ids) <= set(products), campaign.name
