"""`shopmail gallery`: every campaign x language from sample data on one page, at phone and desktop
width; the mails are the composer's (substitutions applied, no token left)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from config.settings import Settings
from shopmail.campaigns import registry
from shopmail.cli import app
from shopmail.mail.personalize import TOKEN_PREFIX
from shopmail.run.gallery import all_sample_mails, length_warnings


def test_the_gallery_shows_every_campaign_and_language_at_two_widths(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "gallery"
    result = CliRunner().invoke(app, ["gallery", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    for name in registry():
        for language in ("ru", "en"):
            slug = f"{name}-{language}-1"
            assert f'id="{slug}"' in page and f'src="{slug}.html" width="375"' in page
            assert f'src="{slug}.html" width="600"' in page
            mail = (out / f"{slug}.html").read_text(encoding="utf-8")
            assert TOKEN_PREFIX not in mail and "Синклитикия" in mail
    assert "sample mails: open file://" in result.output


def test_sample_mails_are_composed_with_the_shop_profile(settings: Settings) -> None:
    branded = settings.model_copy(update={"shop_name": "Ромашка", "shop_name_prepositional": "Ромашке"})
    mails = {s.slug: s.mail for s in all_sample_mails(branded)}
    assert mails["password_reminder-ru-1"].subject == "Восстановление пароля в Ромашке"
    assert "Ромашка" in mails["sale-en-1"].html


def test_too_long_subjects_are_listed_and_refused(settings: Settings) -> None:
    long_name = settings.model_copy(update={"shop_name": "Очень длинное название интернет-магазина " * 2})
    warnings = length_warnings(long_name)
    assert any("new_arrivals/en" in w and "subject" in w for w in warnings), warnings
    assert any("more than 100" in w for w in warnings), warnings
