"""Deployments come from the registry: every campaign is scheduled, every schedule parses, and the
committed prefect.yaml matches what the registry generates."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from config.settings import Settings, get_settings
from flows.deploy import (
    DAILY_ENTRYPOINT,
    POLLER_ENTRYPOINT,
    deployment_specs,
    pool_specs,
    prefect_yaml,
    runner_deployments,
    served_specs,
)
from shopmail.campaigns import Campaign, CampaignError, CampaignKind, load_campaign, registry
from shopmail.schedule import due_on, fire_times

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Europe/Moscow")


def test_every_campaign_has_a_deployment_or_is_polled() -> None:
    specs = {s.name: s for s in deployment_specs()}
    for campaign in registry().values():
        if campaign.polled:
            assert campaign.title in specs["service-poller"].description
            assert specs["service-poller"].entrypoint == POLLER_ENTRYPOINT
        else:
            spec = specs[campaign.name]
            assert spec.cron == campaign.schedule and spec.parameters["campaign"] == campaign.name
            assert spec.parameters["dry_run"] is (campaign.kind == CampaignKind.mass)
            assert str(campaign.kind) in spec.tags and spec.concurrency_limit == 1
    assert specs["daily-schedule"].entrypoint == DAILY_ENTRYPOINT and specs["daily-schedule"].cron is None


def test_every_schedule_parses_and_fires() -> None:
    for campaign in registry().values():
        if campaign.polled:
            continue
        if campaign.schedule is None:  # started by hand from the UI (e.g. a sale announcement)
            assert campaign.kind == CampaignKind.mass, f"{campaign.name} has no schedule"
            continue
        week = [date(2026, 11, 23 + d) for d in range(7)]
        assert any(fire_times(campaign.schedule, day, TZ) for day in week), campaign.name


def test_runner_deployments_carry_schedules_in_the_shop_time_zone() -> None:
    deployments = {d.name: d for d in runner_deployments()}
    poller = deployments["service-poller"]
    assert poller.schedules[0].schedule.cron == "*/5 * * * *"
    assert poller.schedules[0].schedule.timezone == "Europe/Moscow"
    assert deployments["daily-schedule"].schedules == []


def test_bad_cron_is_refused_with_the_file_name(tmp_path: Path) -> None:
    text = (ROOT / "config" / "campaigns" / "wakeup.toml").read_text(encoding="utf-8")
    bad = tmp_path / "wakeup.toml"
    bad.write_text(text.replace('schedule = "0 11 * * *"', 'schedule = "0 25 * * *"'), encoding="utf-8")
    with pytest.raises(CampaignError, match="(?s)wakeup.toml.*bad cron"):
        load_campaign(bad)


def test_due_on_weekly_and_polled() -> None:
    weekly = registry()["new_arrivals"]
    assert weekly.schedule == "0 12 * * 5"
    assert due_on(weekly, date(2026, 11, 27), TZ) and not due_on(weekly, date(2026, 11, 26), TZ)
    polled = Campaign(
        name="x_polled",
        title="x",
        kind="service",
        audience="welcome",
        occasion_key="w:{customer_id}",
        template="welcome",
        marketing=False,
        polled=True,
    )
    assert due_on(polled, date(2026, 11, 26), TZ)


def test_committed_prefect_yaml_matches_the_registry() -> None:
    committed = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    assert committed == prefect_yaml(), "regenerate: shopmail deployments --write prefect.yaml"
    document = yaml.safe_load(committed)
    names = {d["name"] for d in document["deployments"]}
    assert names == {s.name for s in pool_specs()} == {s.name for s in deployment_specs()} | {"run-names"}
    assert all(d["work_pool"]["name"] == "shopmail" for d in document["deployments"])
    # the flow's own form offers campaign titles: the server would refuse a campaign id until
    # `shopmail deploy` sets the deployment's form (and enforces it again)
    for d in document["deployments"]:
        assert d.get("enforce_parameter_schema", True) is ("campaign" not in d["parameters"]), d["name"]


def test_poll_cron_setting_schedules_the_poller_everywhere(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.poll_cron == "*/5 * * * *"
    monkeypatch.setenv("SHOPMAIL_POLL_CRON", "*/2 * * * *")
    get_settings.cache_clear()
    specs = {s.name: s for s in deployment_specs()}
    assert specs["service-poller"].cron == "*/2 * * * *"
    assert specs["wakeup"].cron == registry()["wakeup"].schedule  # campaigns keep their own
    poller = {d["name"]: d for d in yaml.safe_load(prefect_yaml())["deployments"]}["service-poller"]
    assert poller["schedules"] == [{"cron": "*/2 * * * *", "timezone": "Europe/Moscow"}]
    monkeypatch.setenv("SHOPMAIL_POLL_CRON", "*/61 * * *")
    get_settings.cache_clear()
    with pytest.raises(ValidationError, match="bad cron"):
        get_settings()


def test_serve_only_serves_the_named_deployments(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.serve_only == [] and len(served_specs()) == len(deployment_specs())
    monkeypatch.setenv("SHOPMAIL_SERVE_ONLY", " service-poller , wakeup,")
    get_settings.cache_clear()
    assert get_settings().serve_only == ["service-poller", "wakeup"]
    assert [s.name for s in served_specs()] == ["wakeup", "service-poller"]
    assert {d.name for d in runner_deployments()} == {"wakeup", "service-poller"}
    monkeypatch.setenv("SHOPMAIL_SERVE_ONLY", "service-poler")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="names no deployment: service-poler"):
        served_specs()


def test_descriptions_say_the_time_zone_and_no_parameter_names() -> None:
    specs = {s.name: s for s in deployment_specs()}
    assert "Every Friday at 12:00 shop time (Europe/Moscow)" in specs["new_arrivals"].description
    assert "Every 5 minutes, shop time (Europe/Moscow)" in specs["service-poller"].description
    assert "Its last day is 2026-11-30: nothing is sent after it" in specs["sale"].description
    for spec in specs.values():
        assert len(spec.tags) == len(set(spec.tags)), spec.name
        assert "days_before" not in spec.description and "`" not in spec.description, spec.name
    assert specs["review_request"].tags == ("shopmail", "service")


def test_run_forms_are_plain_fields_with_titled_dropdowns() -> None:
    """The form Prefect's UI renders: no `anyOf`/null type switch, segments by title, the campaign of
    a campaign deployment fixed (not offered), the CLI's tools as deployments with their own forms."""
    from flows.forms import campaign_id, segment_id

    forms = {d.name: d._parameter_openapi_schema.model_dump(exclude_unset=True) for d in runner_deployments()}
    sale = forms["sale"]["properties"]
    assert "campaign" not in sale and forms["sale"]["required"] == []
    assert {"anyOf", "oneOf"}.isdisjoint(str(forms["sale"]).replace("'", '"').split('"'))
    assert sale["as_of"] == {**sale["as_of"], "type": "string", "format": "date", "title": "Shop day"}
    assert (
        "default" not in sale["as_of"] and "default" not in sale["limit"] and "default" not in sale["segment"]
    )
    assert "VIP" in sale["segment"]["enum"] and "vip" not in sale["segment"]["enum"]
    assert segment_id("VIP") == "vip" == segment_id("vip") and segment_id("") is None
    assert campaign_id("Распродажа") == "sale"
    for tool in ("mail-preview", "segment-size", "why-mail", "campaign-history"):
        assert tool in forms and "anyOf" not in str(forms[tool]), tool
    assert (
        "Все, кого выбирает кампания (без сегмента)"
        not in forms["segment-size"]["properties"]["segment"]["enum"]
    )
