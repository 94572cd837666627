"""Deployments come from the registry: every campaign is scheduled, every schedule parses, and the
committed prefect.yaml matches what the registry generates."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from flows.deploy import (
    DAILY_ENTRYPOINT,
    POLLER_ENTRYPOINT,
    deployment_specs,
    prefect_yaml,
    runner_deployments,
)
from shopmail.campaigns import Campaign, CampaignError, CampaignKind, load_campaign, registry
from shopmail.schedule import due_on, fire_times

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Europe/Moscow")


def test_every_campaign_has_a_deployment_or_is_polled() -> None:
    specs = {s.name: s for s in deployment_specs()}
    for campaign in registry().values():
        if campaign.polled:
            assert campaign.name in specs["service-poller"].description
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
    assert names == {s.name for s in deployment_specs()}
    assert all(d["work_pool"]["name"] == "shopmail" for d in document["deployments"])
