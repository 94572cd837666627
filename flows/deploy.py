"""Deployments generated from the campaign registry: `shopmail serve` (one machine) and
`prefect.yaml` (work pools: `shopmail deploy`, i.e. `prefect deploy --all` and the run forms)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from config.quiet_logs import LOGGING_CONFIG, SETTING, apply_logging_config, use_logging_config
from config.settings import Settings, get_settings
from flows.forms import segment_titles, shape_form
from shopmail.campaigns import CampaignKind, enabled_campaigns, registry

CAMPAIGN_ENTRYPOINT = "flows/campaign.py:campaign_flow"
POLLER_ENTRYPOINT = "flows/service_poller.py:service_poller"
DAILY_ENTRYPOINT = "flows/daily_schedule.py:daily_schedule"
REPORT_ENTRYPOINT = "flows/campaign_report.py:campaign_report"
RESULTS_ENTRYPOINT = "flows/campaign_results.py:campaign_results"
PREVIEW_ENTRYPOINT = "flows/mail_preview.py:mail_preview"
SEGMENT_ENTRYPOINT = "flows/segment_size.py:segment_size"
WHY_ENTRYPOINT = "flows/why_mail.py:why_mail"
HISTORY_ENTRYPOINT = "flows/campaign_history.py:campaign_history"
SERIES_TRIAL_ENTRYPOINT = "flows/series_trial.py:series_trial_flow"
RUN_NAMES_ENTRYPOINT = "flows/run_names.py:run_names"
RECOVERY_ENTRYPOINT = "flows/recovery.py:recovery"
DEFAULT_POOL = "shopmail"
WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def cron_words(cron: str, timezone: str) -> str:
    """A cron in a marketer's words with its time zone: `0 12 * * 5` -> `Every Friday at 12:00 shop
    time (Europe/Moscow).`; crons other than daily/weekly at a fixed time are shown as they are."""
    minute, hour, day, month, weekday = cron.split()
    zone = f"shop time ({timezone})"
    if minute.isdigit() and hour.isdigit() and day == month == "*":
        at = f"{int(hour):02d}:{int(minute):02d}"
        if weekday == "*":
            return f"Every day at {at} {zone}."
        if weekday.isdigit() and int(weekday) <= 7:
            return f"Every {WEEKDAYS[int(weekday) % 7]} at {at} {zone}."
    if minute.startswith("*/") and hour == day == month == weekday == "*":
        return f"Every {minute[2:]} minutes, {zone}."
    if minute.isdigit() and hour == day == month == weekday == "*":
        return f"Every hour at minute {int(minute)}, {zone}."
    return f"Schedule `{cron}`, {zone}."


def ends_words(params: dict[str, Any]) -> str:
    """A campaign with a last day (a sale's `ends_on`): the day, so that a run after it sending nothing
    is no surprise."""
    return (
        f"Its last day is {params['ends_on']}: nothing is sent after it (a new sale needs a new name "
        "and last day in the campaign file)."
    )


def _tags(*tags: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tags))  # in order, each once


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


def deployment_specs(settings: Settings | None = None) -> list[DeploymentSpec]:
    """Every scheduled campaign, the service poller (polled campaigns, on `settings.poll_cron`) and
    the daily schedule."""
    settings = settings or get_settings()
    tz = settings.timezone
    specs = [
        DeploymentSpec(
            name=c.name,
            entrypoint=CAMPAIGN_ENTRYPOINT,
            description=" ".join(
                [f"{c.title}. {c.description}".strip()]
                + ([c.series_words()] if c.is_series else [])
                + [cron_words(c.schedule, tz) if c.schedule else "No schedule: started by hand."]
                + ["A run started by hand is a dry run unless you untick “Dry run”."]
                * (c.kind == CampaignKind.mass)
                + ([ends_words(c.params)] if c.params.get("ends_on") else [])
            ),
            cron=c.schedule,
            # a mass mailing started by hand defaults to a dry run (review the artifact, then send);
            # its scheduled run sends, guarded by the approval pause
            parameters={"campaign": c.name, "dry_run": c.kind == CampaignKind.mass},
            schedule_parameters={"dry_run": False} if c.kind == CampaignKind.mass else {},
            tags=_tags("shopmail", str(c.kind), "marketing" if c.marketing else "service"),
        )
        for c in enabled_campaigns().values()  # a campaign switched off for this shop is not scheduled
        if not c.polled
    ]
    polled = sorted(c.title for c in enabled_campaigns().values() if c.polled)
    specs.append(
        DeploymentSpec(
            name="service-poller",
            entrypoint=POLLER_ENTRYPOINT,
            description="Service mails for new shop events since the last poll. "
            f"{cron_words(settings.poll_cron, tz)} Mails: " + "; ".join(polled) + ".",
            cron=settings.poll_cron,
            tags=("shopmail", "service"),
        )
    )
    specs.append(
        DeploymentSpec(
            name="recovery",
            entrypoint=RECOVERY_ENTRYPOINT,
            description="Runs that finish themselves: closes runs whose process died and sends the mails "
            f"they left open, exactly once. {cron_words(settings.recovery_cron, tz)}",
            cron=settings.recovery_cron,
            tags=("shopmail", "maintenance"),
        )
    )
    specs.append(
        DeploymentSpec(
            name="daily-schedule",
            entrypoint=DAILY_ENTRYPOINT,
            description="Every campaign due on a day, most important first: catch up a missed day. "
            "Started by hand.",
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
    specs.append(
        DeploymentSpec(
            name="campaign-results",
            entrypoint=RESULTS_ENTRYPOINT,
            description="What a campaign's mails did in a period: delivered, bounced, opened, clicked "
            "(per link: which product, which button), unsubscribed, spam reports, orders and revenue after "
            "a click beside the holdout uplift; per variant, language, segment, run or A/B phase.",
            tags=("shopmail", "report"),
        )
    )
    specs += [
        DeploymentSpec(
            name="mail-preview",
            entrypoint=PREVIEW_ENTRYPOINT,
            description="The mail one customer would get from a campaign: subject, text and HTML. "
            "Nothing is sent.",
            tags=("shopmail", "tool"),
        ),
        DeploymentSpec(
            name="segment-size",
            entrypoint=SEGMENT_ENTRYPOINT,
            description="How big a segment is: customers, share of all customers, marketing consent, "
            "a sample without addresses.",
            tags=("shopmail", "tool"),
        ),
        DeploymentSpec(
            name="why-mail",
            entrypoint=WHY_ENTRYPOINT,
            description="Why a customer got, or did not get, a campaign's mail: the segment rule on "
            "their values and the mails recorded for them.",
            tags=("shopmail", "tool"),
        ),
        DeploymentSpec(
            name="series-trial",
            entrypoint=SERIES_TRIAL_ENTRYPOINT,
            description="Try a series on a test customer: every step's mail now, shown and (with a test "
            "address) sent there; nothing is recorded for the customer.",
            tags=("shopmail", "tool"),
        ),
        DeploymentSpec(
            name="campaign-history",
            entrypoint=HISTORY_ENTRYPOINT,
            description="The last runs of a campaign side by side: day, mode, status, segment, counts.",
            tags=("shopmail", "tool"),
        ),
    ]
    return specs


def _flow_for(entrypoint: str):
    if entrypoint == CAMPAIGN_ENTRYPOINT:
        from flows.campaign import configured_campaign_flow

        return configured_campaign_flow()
    import importlib

    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def pool_specs(settings: Settings | None = None) -> list[DeploymentSpec]:
    """The deployments of `prefect.yaml` (work pools): those `shopmail serve` serves, and `run-names`,
    which gives waiting runs their names there (`shopmail serve` does that itself)."""
    settings = settings or get_settings()
    return deployment_specs(settings) + [
        DeploymentSpec(
            name="run-names",
            entrypoint=RUN_NAMES_ENTRYPOINT,
            description="Gives the runs waiting to start (scheduled, or started from a form) their "
            "meaningful names instead of random ones. Every hour on the hour; each run watches for "
            f"59 minutes ({settings.timezone}).",
            cron="0 * * * *",
            parameters={"watch_minutes": 59},
            tags=("shopmail", "maintenance"),
        )
    ]


def served_specs(settings: Settings | None = None) -> list[DeploymentSpec]:
    """The deployments `shopmail serve` serves: all, or only those named in `settings.serve_only`.

    Raises ValueError for a name that is no deployment (a typo must not silently serve nothing).
    """
    settings = settings or get_settings()
    specs = deployment_specs(settings)
    if not settings.serve_only:
        return specs
    known = {spec.name for spec in specs}
    unknown = sorted(set(settings.serve_only) - known)
    if unknown:
        raise ValueError(
            f"SHOPMAIL_SERVE_ONLY names no deployment: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    return [spec for spec in specs if spec.name in settings.serve_only]


def runner_deployments(settings: Settings | None = None) -> list:
    """`RunnerDeployment`s for `prefect.serve` (one process serves them all, or `serve_only`)."""
    from prefect.utilities.callables import ParameterSchema

    settings = settings or get_settings()
    deployments = []
    for spec in served_specs(settings):
        deployment = _flow_for(spec.entrypoint).to_deployment(
            name=spec.name,
            cron=None,
            schedules=_schedules(spec, settings),
            parameters=spec.parameters,
            description=spec.description,
            tags=list(spec.tags),
            concurrency_limit=spec.concurrency_limit,
        )
        schema = deployment._parameter_openapi_schema.model_dump(exclude_unset=True)
        deployment._parameter_openapi_schema = ParameterSchema(**form_for(spec, schema))
        deployments.append(deployment)
    return deployments


def form_for(spec: DeploymentSpec, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The deployment's run form: the flow's parameter schema (`schema`, default: the one Prefect
    derives from the entrypoint's flow) with human field titles and no `null` defaults; a campaign
    deployment's campaign is fixed (not in the form: the `sale` deployment runs `sale`) and its
    segment field names the campaign's usual segment and offers only segments it can evaluate."""
    if schema is None:
        from prefect.utilities.callables import parameter_schema

        schema = parameter_schema(_flow_for(spec.entrypoint)).model_dump(exclude_unset=True)
    campaign = spec.parameters.get("campaign")
    notes = {}
    if campaign:
        usual = registry()[campaign].segment
        shown = segment_titles().get(usual, usual) if usual else "none, everyone it picks"
        notes["segment"] = f"This campaign's usual segment: {shown}."
    fixed = {"campaign": campaign} if campaign else {}
    shaped = shape_form(schema, fixed=fixed, notes=notes)
    if campaign and "segment" in shaped["properties"]:  # only segments this campaign's data can evaluate
        usable = set(usable_segments(registry()[campaign].datasets))
        field = shaped["properties"]["segment"]
        field["enum"] = [title for name, title in segment_titles().items() if name in usable]
    return shaped


def usable_segments(datasets: tuple[str, ...] | list[str]) -> list[str]:
    """Segments (and `all`) whose rule reads only what a campaign with `datasets` extracts."""
    from segments.rules import load_segments

    catalogue = load_segments()
    return ["all"] + [n for n in catalogue.names() if set(catalogue.datasets(n)) <= set(datasets)]


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
    settings = get_settings()
    timezone = timezone or settings.timezone
    document = {
        "name": "shopmail",
        "prefect-version": "3.9",
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
                # the flow's own form offers campaign titles, the deployment fixes a campaign id: the
                # server would refuse it; `shopmail deploy` then sets the deployment's form (campaign
                # fixed, not in it) and turns enforcement back on
                **({"enforce_parameter_schema": False} if "campaign" in spec.parameters else {}),
                # job variables: the same logging as `shopmail serve` and the CLI (quiet routine lines,
                # no traceback for a decision: config/quiet_logs.py); resolved by `prefect deploy`
                "work_pool": {"name": pool, "job_variables": {"env": dict(LOGGING_JOB_ENV)}},
            }
            for spec in pool_specs(settings)
        ],
    }
    header = (
        "# Generated by `shopmail deployments --write prefect.yaml` from config/campaigns/: do not edit.\n"
        "# Deploy onto a work pool: `shopmail deploy` (`prefect deploy --all` and the run forms; README,\n"
        "# Operations). `prefect deploy --all` alone leaves the flows' generic forms, unenforced.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def deploy_to_pools(
    prefect_file: Path = Path("prefect.yaml"), *, run_prefect_deploy: bool = True
) -> list[str]:
    """`prefect deploy --all` from `prefect_file` (Prefect's own deploy: pull steps, work pools,
    schedules), then every deployment's run form as `shopmail serve` gives it (`apply_forms`).

    Prefect derives a `prefect.yaml` deployment's parameter schema from its entrypoint's flow and has
    no key to replace it, so the forms are set afterwards through the API (with the server enforcing
    them, as for `shopmail serve`). Raises subprocess.CalledProcessError when `prefect deploy` fails."""
    if run_prefect_deploy:
        deploy_all = ["deploy", "--all", "--prefect-file", str(prefect_file)]
        subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *deploy_all], check=True)
    return apply_forms(prefect_file)


def apply_forms(prefect_file: Path = Path("prefect.yaml")) -> list[str]:
    """Set the run form (`form_for`) of every deployment of `prefect_file` on the Prefect server;
    returns their `flow/deployment` names. Raises ValueError for a deployment the registry does not
    generate (a stale `prefect.yaml`: regenerate it) and prefect's ObjectNotFound for one that is
    not on the server (deploy first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.utilities.callables import ParameterSchema

    document = yaml.safe_load(Path(prefect_file).read_text(encoding="utf-8"))
    specs = {spec.name: spec for spec in pool_specs()}
    unknown = sorted({d["name"] for d in document["deployments"]} - set(specs))
    if unknown:
        raise ValueError(
            f"{prefect_file} has deployments the registry does not generate: {', '.join(unknown)} "
            "(regenerate it: shopmail deployments --write prefect.yaml)"
        )
    done = []
    with get_client(sync_client=True) as client:
        for entry in document["deployments"]:
            spec = specs[entry["name"]]
            full_name = f"{_flow_for(spec.entrypoint).name}/{spec.name}"
            deployment = client.read_deployment_by_name(full_name)
            form = ParameterSchema(**form_for(spec)).model_dump(exclude_unset=True)  # as serve sends it
            update = DeploymentUpdate(parameter_openapi_schema=form, enforce_parameter_schema=True)
            client.update_deployment(deployment.id, update)
            done.append(full_name)
    return done


LOGGING_JOB_ENV = {"PREFECT_LOGGING_SETTINGS_PATH": "{{ $SHOPMAIL_PROJECT_DIR }}/config/logging.yml"}


def use_quiet_logging() -> None:
    """Point this process and the flow runs it starts at config/logging.yml (Prefect's logging with
    the engine's routine lines dropped), unless PREFECT_LOGGING_SETTINGS_PATH is set already."""
    if os.environ.get(SETTING) == str(LOGGING_CONFIG) or use_logging_config() != str(LOGGING_CONFIG):
        return  # applied already, or the operator's own settings file
    apply_logging_config()
