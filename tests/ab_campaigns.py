"""A campaigns folder for A/B tests: the shipped campaign files plus `news_ab`, the weekly new-arrivals
digest with an A/B test of two subjects, and `wakeup` as the single mail it was before it became a
series (set SHOPMAIL_CAMPAIGNS_DIR to it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import get_settings
from shopmail.campaigns import CAMPAIGNS_DIR, registry

SUBJECTS = {"a": "Новинки недели для вас", "b": "Только что привезли: посмотрите первыми"}


def ab_campaigns_dir(
    folder: Path,
    *,
    mode: str = "winner",
    wait_hours: float = 0.003,
    test_share: float = 0.4,
    min_per_variant: int = 300,
    metric: str = "click_rate",
    extra: str = "",
) -> Path:
    """Write the folder; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in CAMPAIGNS_DIR.glob("*.toml"):
        shutil.copyfile(path, folder / path.name)
    # wakeup as a single mail (a series has no A/B test): the continuous split's trigger campaign
    shutil.copyfile(CAMPAIGNS_DIR.parent / "single_mail_examples" / "wakeup.toml", folder / "wakeup.toml")
    text = (CAMPAIGNS_DIR / "new_arrivals.toml").read_text(encoding="utf-8")
    text = text.replace('name = "new_arrivals"', 'name = "news_ab"')
    text = text.replace('title = "Новинки недели"', 'title = "Новинки недели: A/B-тест темы"')
    text = text.replace('occasion_key = "new_arrivals:{issue}"', 'occasion_key = "news_ab:{issue}"')
    text = text.replace('schedule = "0 12 * * 5"\n', "")
    settings = (
        f'mode = "{mode}"\nmetric = "{metric}"\nmin_per_variant = {min_per_variant}\nrefresh_minutes = 0.02\n'
        if mode == "split"
        else f'mode = "{mode}"\ntest_share = {test_share}\nwait_hours = {wait_hours}\nmetric = "{metric}"\n'
        f"min_per_variant = {min_per_variant}\nrefresh_minutes = 0.02\n"
    )
    variants = "".join(
        f'\n[[ab_test.variants]]\nname = "{name}"\n'
        f'subject = {{ ru = "{subject}", en = "New this week ({name})" }}\n'
        for name, subject in SUBJECTS.items()
    )
    (folder / "news_ab.toml").write_text(f"{text}\n[ab_test]\n{settings}{extra}{variants}", encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def shipped_campaigns_afterwards() -> Iterator[None]:
    """Autouse where imported: tests that point SHOPMAIL_CAMPAIGNS_DIR at a folder of their own leave
    no cache built from it behind (later tests compare run forms built from the shipped campaigns)."""
    yield
    from flows.forms import campaign_titles

    get_settings.cache_clear()
    registry.cache_clear()
    campaign_titles.cache_clear()
