"""What a customer reads: typography per language, the shop name's Russian forms, preheaders (per
campaign and language, a default, shared bodies that stay byte-identical when the preheader prints a
personal value), the palette's contrast, and the subject/preheader length check at template load."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from config.settings import Settings
from shopmail.campaigns import get_campaign
from shopmail.mail.palette import DARK_CARD, LIGHT_CARD, contrast, palette
from shopmail.mail.rendering import TEMPLATES_DIR, TemplateError
from shopmail.mail.typography import NBSP, typography
from shopmail.run.composer import MailComposer
from shopmail.run.gallery import sample_mails
from shopmail.state import ledger


def test_typography_per_language() -> None:
    ru = typography("Скидки до 50 % на товары — в наличии. Заказ № 7 и не только", "ru")
    expected = "Скидки до_50_% на_товары_— в_наличии. Заказ №_7 и_не_только".replace("_", NBSP)
    assert ru == expected
    assert typography("Up to 50 % off — and 10\u00a0% more", "en") == f"Up to 50% off{NBSP}— and 10% more"
    assert typography("width:100%; a b", "ru") == "width:100%; a b"  # never adds a space, Latin untouched


def test_mails_carry_the_typography_and_the_declined_shop_name(settings: Settings) -> None:
    mails = {s.slug: s.mail for s in sample_mails(get_campaign("sale"), settings)}
    assert "up to 50% off" in mails["sale-en-1"].subject and "50 %" not in mails["sale-en-1"].html
    assert f"50{NBSP}%" in mails["sale-ru-1"].html and f"до{NBSP}30" in mails["sale-ru-1"].html
    reset = {s.slug: s.mail for s in sample_mails(get_campaign("password_reminder"), settings)}
    # the prepositional form of the configured shop name (the tests' profile: "Чайный дом")
    expected = f"Восстановление пароля в {settings.shop_name_prepositional}"
    assert settings.shop_name_prepositional != settings.shop_name
    assert reset["password_reminder-ru-1"].subject == expected


def test_every_mail_has_its_preheader_hidden_at_the_top(settings: Settings) -> None:
    for sample in sample_mails(get_campaign("order_shipped"), settings):
        html = sample.mail.html
        hidden = html.index('<div style="display:none;')
        assert hidden < html.index("<table"), "the preheader comes first in the body"
        expected = (
            "Трек-номер: RA812584391RU." if sample.language == "ru" else "Tracking number: RA812584391RU."
        )
        assert html[hidden:].split(">", 1)[1].startswith(expected)


def test_a_campaign_without_a_preheader_gets_the_default(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, folder)
    (folder / "welcome" / "en" / "preheader.j2").unlink()
    custom = settings.model_copy(update={"templates_dir": folder})
    mails = {s.slug: s.mail for s in sample_mails(get_campaign("welcome"), custom)}
    default = f"A mail from {settings.shop_name}. Questions: {settings.support_email}"
    assert default in mails["welcome-en-1"].html
    assert "Спасибо за регистрацию! Ваш личный кабинет уже готов." in mails["welcome-ru-1"].html


def test_a_preheader_printing_a_personal_value_keeps_shared_bodies_exact(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, folder)
    for language in ("ru", "en"):
        (folder / "sale" / language / "preheader.j2").write_text("Для {{ customer.first_name }}: скидки")
    custom = settings.model_copy(update={"templates_dir": folder})
    campaign = get_campaign("sale")
    names = ["Иван", "O'Brien & <Co>", "", "Анна", 'Zoë "Z"', "Пётр"] * 3
    rows = [
        {
            "customer_id": i + 1,
            "email": f"c{i + 1}@mail.test",
            "first_name": name,
            "last_name": "",
            "language": "ru",
            "occasion_key": "sale:x",
            "message_key": ledger.message_key("sale", "sale:x", i + 1),
            "sale_id": "x",
            "headline": "Распродажа",
            "headline_en": "Sale",
            "discount_text": "Скидки",
            "discount_text_en": "Discounts",
            "ends_on": date(2026, 12, 1),
            "sale_url": "",
            "products": [],
        }
        for i, name in enumerate(names)
    ]
    composer = MailComposer(campaign, custom, {})
    mails, errors = composer.compose_many(rows)
    assert errors == [] and composer.unshared is None and composer.stats["shared"] >= len(rows) - 3
    single = MailComposer(campaign, custom, {})
    assert [m.personalized() for m in mails] == [single.compose(r) for r in rows]
    assert "Для O&#39;Brien &amp; &lt;Co&gt;: скидки" in mails[1].personalized().html


@pytest.mark.parametrize("brand", ["#c2255c", "#ffd400", "#0a0a0a", "#7fdbff"])
def test_the_palette_reads_on_light_and_dark_cards(brand: str) -> None:
    colours = palette(brand, "#ffffff")
    assert (
        contrast(colours["accent"], LIGHT_CARD) >= 4.5 and contrast(colours["accent_dark"], DARK_CARD) >= 4.5
    )
    assert contrast(colours["button_text"], colours["button"]) >= 4.5
    assert contrast(colours["muted"], LIGHT_CARD) >= 4.5 and contrast(colours["muted_dark"], DARK_CARD) >= 4.5


def test_a_subject_over_100_characters_stops_the_run_before_any_mail(settings: Settings) -> None:
    long_name = settings.model_copy(
        update={"shop_name": "Интернет-магазин бытовой техники и электроники " * 2}
    )
    with pytest.raises(TemplateError, match="more than 100"):
        MailComposer(get_campaign("new_arrivals"), long_name, {})
    lenient = MailComposer(get_campaign("new_arrivals"), long_name, {}, strict=False)
    assert lenient.lengths.refusals and not lenient.coupons
