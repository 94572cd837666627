"""Deployments generated from the campaign registry: `shopmail serve` (one machine) and
`prefect.yaml` (work pools, `prefect deploy --all`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from config.settings import Settings, get_settings
from shopmail.campaigns import CampaignKind, registry
from shopmail.schedule import POLL_CRON

CAMPAIGN_ENTRYPOINT = "flows/campaign.py:campaign_flow"
POLLER_ENTRYPOINT = "flows/service_poller.py:service_poller"
DAILY_ENTRYPOINT = "flows/daily_schedule.py:daily_schedule"
REPORT_ENTRYPOINT = "flows/campaign_report.py:campaign_report"
DEFAULT_POOL = "shopmail"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: what runs, when (cron in the shop time zone) and with which defaults."""

    name: str
    entrypoint: str
    description: str
    cron: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    schedule_parameters: dict[str, Any] = field(default_factory=dict)  # the scheduled runs' overrides
    concurrency_limit: int = 1  # never two runs of the same campaign at once


def deployment_specs() -> list[DeploymentSpec]:
    """Every scheduled campaign, the service poller (polled campaigns) and the daily schedule."""
    specs = [
        DeploymentSpec(
            name=c.name,
            entrypoint=CAMPAIGN_ENTRYPOINT,
            description=f"{c.title}. {c.description}".strip(),
            cron=c.schedule,
            # a mass mailing started by hand defaults to a dry run (review the artifact, then send);
            # its scheduled run sends, guarded by the approval pause
            parameters={"campaign": c.name, "dry_run": c.kind == CampaignKind.mass},
            schedule_parameters={"dry_run": False} if c.kind == CampaignKind.mass else {},
            tags=("shopmail", str(c.kind), "marketing" if c.marketing else "service"),
        )
        for c in registry().values()
        if not c.polled
    ]
    polled = sorted(c.name for c in registry().values() if c.polled)
    specs.append(
        DeploymentSpec(
            name="service-poller",
            entrypoint=POLLER_ENTRYPOINT,
            description="Service mails every 5 minutes since the last watermark: " + ", ".join(polled),
            cron=POLL_CRON,
            tags=("shopmail", "service"),
        )
    )
    specs.append(
        DeploymentSpec(
            name="daily-schedule",
            entrypoint=DAILY_ENTRYPOINT,
            description="Every campaign due on a day, in priority order: backfill a missed day.",
            tags=("shopmail", "backfill"),
        )
    )
    specs.append(
        DeploymentSpec(
            name="campaign-report",
            entrypoint=REPORT_ENTRYPOINT,
            description="Measured results of a campaign: mailed vs holdout, uplift in conversion, revenue.",
            tags=("shopmail", "report"),
        )
    )
    return specs


def _flow_for(entrypoint: str):
    if entrypoint == CAMPAIGN_ENTRYPOINT:
        from flows.campaign import configured_campaign_flow

        return configured_campaign_flow()
    if entrypoint == POLLER_ENTRYPOINT:
        from flows.service_poller import service_poller

        return service_poller
    if entrypoint == REPORT_ENTRYPOINT:
        from flows.campaign_report import campaign_report

        return campaign_report
    from flows.daily_schedule import daily_schedule

    return daily_schedule


def runner_deployments(settings: Settings | None = None) -> list:
    """`RunnerDeployment`s for `prefect.serve` (one process serves them all)."""
    settings = settings or get_settings()
    deployments = []
    for spec in deployment_specs():
        deployments.append(
            _flow_for(spec.entrypoint).to_deployment(
                name=spec.name,
                cron=None,
                schedules=_schedules(spec, settings),
                parameters=spec.parameters,
                description=spec.description,
                tags=list(spec.tags),
                concurrency_limit=spec.concurrency_limit,
            )
        )
    return deployments


def _schedules(spec: DeploymentSpec, settings: Settings) -> list:
    from prefect.schedules import Cron

    if not spec.cron:
        return []
    return [Cron(spec.cron, timezone=settings.timezone, parameters=spec.schedule_parameters or None)]


def _yaml_schedule(spec: DeploymentSpec, timezone: str) -> dict[str, Any]:
    schedule: dict[str, Any] = {"cron": spec.cron, "timezone": timezone}
    if spec.schedule_parameters:
        schedule["parameters"] = spec.schedule_parameters
    return schedule


def prefect_yaml(pool: str = DEFAULT_POOL, timezone: str | None = None) -> str:
    """The `prefect.yaml` for `prefect deploy --all` onto a work pool (process, Docker, Kubernetes)."""
    timezone = timezone or get_settings().timezone
    document = {
        "name": "shopmail",
        "prefect-version": "3.8",
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SHOPMAIL_PROJECT_DIR }}"}}
        ],
        "deployments": [
            {
                "name": spec.name,
                "entrypoint": spec.entrypoint,
                "description": spec.description,
                "tags": list(spec.tags),
                "parameters": spec.parameters,
                "schedules": [_yaml_schedule(spec, timezone)] if spec.cron else [],
                "concurrency_limit": spec.concurrency_limit,
                "work_pool": {"name": pool},
            }
            for spec in deployment_specs()
        ],
    }
    header = (
        "# Generated by `shopmail deployments --write prefect.yaml` from config/campaigns/: do not edit.\n"
        "# Deploy onto a work pool: `prefect deploy --all` (see README, Operations).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
