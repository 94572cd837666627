"""The product grid is rendered once per product set and reused, keyed by the products' contents:
a real customer never gets a sample product's name, price or link (the load-time length check and the
gallery render the sample products, whose ids 1, 2, 3... are real ids in most shops), nor yesterday's
price in a long-lived `shopmail serve` process. Found by tests/test_platform_kits.py: Jack's cart of
product 1 showed the sample book "Думай медленно…" at £999,990 with a shop.example link."""

from __future__ import annotations

from config.settings import Settings
from shopmail.campaigns import get_campaign
from shopmail.mail.samples import sample_products
from shopmail.run.composer import MailComposer


def _cart_row(product: int) -> dict:
    return {
        "customer_id": 7,
        "first_name": "Jack",
        "last_name": "Evans",
        "email": "jack@mail.example",
        "language": "en",
        "message_key": "k-7",
        "occasion_key": "cart:1:step1",
        "products": [product],
        "units": 1,
        "cart_total": 24.99,
        "series_step": 1,
    }


def _product(name: str, price: float) -> dict:
    sample = sample_products_of_settings()[1]
    return {**sample, "name": name, "price": price, "url": "https://tea-house.tests.example/p/1"}


def sample_products_of_settings() -> dict:
    from config.settings import get_settings

    return sample_products(get_settings().templates_dir)


def test_a_real_product_with_a_sample_products_id_shows_its_own_data(settings: Settings) -> None:
    spec = get_campaign("abandoned_cart")
    sample = MailComposer(spec, settings, sample_products(settings.templates_dir), strict=False)
    shown_sample = sample.compose(_cart_row(1)).personalized().text
    assert "Думай медленно" in shown_sample  # the sample product, rendered (and cached) first

    real = MailComposer(spec, settings, {1: _product('The "Classic" Mug', 24.99)}).compose(_cart_row(1))
    text = real.personalized().text
    assert 'The "Classic" Mug' in text and "tea-house.tests.example/p/1" in text, text
    assert "Думай медленно" not in text and "shop.example/p/1" not in text.replace("tests.example", "")

    # the same product id at a new price (a later run in the same process): the new price
    later = MailComposer(spec, settings, {1: _product('The "Classic" Mug', 19.99)}).compose(_cart_row(1))
    assert "19.99" in later.personalized().text and "24.99\n  https" not in later.personalized().text
