"""The campaign registry and the rules every campaign file must follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from segments.audiences.registry import AUDIENCES
from shopmail.campaigns import CampaignError, get_campaign, load_campaign, registry
from shopmail.mail.rendering import LANGUAGES, PARTS, TEMPLATES_DIR


def test_registry_finds_wakeup() -> None:
    wakeup = get_campaign("wakeup")
    assert wakeup.marketing and wakeup.kind == "trigger"
    assert wakeup.occasion_fields == ["order_id"] and wakeup.is_series  # one entry per delivered order
    assert [step.values for step in wakeup.steps] == [{"days": 7}, {"days": 14}]


@pytest.mark.parametrize("name", list(registry()))
def test_every_campaign_has_audience_and_templates_in_every_language(name: str) -> None:
    campaign = get_campaign(name)
    assert campaign.audience in AUDIENCES
    for language in LANGUAGES:
        for part in PARTS:
            assert (TEMPLATES_DIR / campaign.template / language / part).is_file(), (language, part)


def test_unknown_campaign_is_a_clear_error() -> None:
    with pytest.raises(CampaignError, match="unknown campaign 'nope'.*wakeup"):
        get_campaign("nope")


def test_invalid_campaign_file_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "broken"\ntitle = "x"\nkind = "weekly"\n', encoding="utf-8")
    with pytest.raises(CampaignError, match="broken.toml"):
        load_campaign(bad)
    mismatch = tmp_path / "other.toml"
    text = (Path(__file__).parent.parent / "config" / "campaigns" / "wakeup.toml").read_text()
    mismatch.write_text(text, encoding="utf-8")
    with pytest.raises(CampaignError, match="must match the file name"):
        load_campaign(mismatch)
