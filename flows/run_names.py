"""Meaningful run names from the moment a run exists, not only once it starts.

Prefect 3.9 names a flow run when the run is created, and Shopmail's `flow_run_name` applies only when
the run starts (the engine renames it then). Until then a run has a random name:
- the server's (`prefect.utilities.names.generate_slug(2)`, coolname's adjective-animal slug, e.g.
  `gentle-otter`): every run its scheduler creates from a deployment schedule, and every run created
  through the API without a name;
- the UI's run form suggestion: the V2 UI (the default) `<Adjective>-<Animal>` (e.g. `Rustic-Koala`),
  the V1 UI `<greek letter>[number]-<star or place>[-<suffix>]` (e.g. `theta4-cassiopeiae-nebula`).
Nothing in Prefect 3.9 (server, deployment, `prefect.yaml`, RunnerDeployment) takes a name template
for those runs. So `rename_waiting_runs` gives every waiting (Scheduled, Late, Pending) run of a
Shopmail deployment whose name is one of those random names the name its flow will give it, computed
from the run's parameters and its scheduled start in shop time (an empty `as_of` is the shop day of
the scheduled start, not of now). `shopmail serve` does it every few seconds; on a work pool the
`run-names` deployment (this flow) does it. A name typed in the run form is kept, also when the run
starts (`name_at_start`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from config.settings import get_settings
from flows.forms import bounded_int, campaign_id, segment_id

# The UI's suggestions (prefect/server/ui*/assets, Prefect 3.9.1; tests/test_run_names.py checks
# them against the installed UI): V2 `${productAdjective}-${animal of at most 6 characters}`.
V2_UI_ADJECTIVES = (  # alternatives of a regular expression
    "Awesome|Rustic|Small|Gorgeous|Fantastic|Sleek|Intelligent|Unbranded|Refined|Licensed|Generic|"
    "Practical|Ergonomic|Handcrafted|Tasty|Handmade|Incredible"
)
V1_UI_GREEK = (
    "alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|omicron|pi|rho|sigma|"
    "tau|upsilon|phi|chi|psi|omega"
)
_V2_UI = re.compile(rf"^(?:{V2_UI_ADJECTIVES})-[^\s-][^-]{{0,5}}$")
_V1_UI = re.compile(rf"^(?:{V1_UI_GREEK})\d{{0,4}}(?:-+[a-z]+){{0,4}}$")  # a star may be empty
WAITING = ("SCHEDULED", "PENDING")  # state types of a run that has not started (Late is Scheduled)
DEPLOYMENT_TAG = "shopmail"
PAGE = 200  # the most runs the Prefect API returns at once


@cache
def _coolname_words() -> tuple[frozenset[str], frozenset[str]]:
    """The words of coolname's two-word slugs (Prefect's `generate_slug(2)`): first, second."""
    import coolname
    from coolname.loader import load_config

    config = load_config(str(Path(coolname.__file__).parent / "data"))

    def words(*lists: str) -> frozenset[str]:
        return frozenset(w for name in lists for w in config[name].get("words", []))

    return (
        words("adjective", "adjective_near", "noun_adjective", "prefix", "size"),
        words("animal", "animal_breed", "animal_legendary"),
    )


def looks_generated(name: str | None) -> bool:
    """Whether `name` is a random name Prefect gave (server or UI), not one a person chose."""
    if not name:
        return True
    first, second = _coolname_words()
    parts = name.split("-")
    if len(parts) == 2 and parts[0] in first and parts[1] in second:
        return True
    return bool(_V2_UI.match(name) or _V1_UI.match(name))


# Namers: the flow's parameters and the run's time (shop time zone) -> the run's name. The flows'
# own `flow_run_name` use them too (with the start time), so the early name is the same name.
Namer = Callable[[dict[str, Any], datetime], str]


def campaign_run_name(params: dict[str, Any], when: datetime | date) -> str:
    """`<campaign>[-<segment>]-<day>-<send|dry-run>`: ids even when the form passed titles; an empty
    `as_of` is the shop day of `when`."""
    mode = "dry-run" if params.get("dry_run") else "send"
    day = when.date() if isinstance(when, datetime) else when
    as_of = params.get("as_of") or day.isoformat()
    try:
        name, chosen = campaign_id(params.get("campaign")), segment_id(params.get("segment"))
    except ValueError:  # the flow itself reports it; the name stays readable
        name, chosen = str(params.get("campaign")), None
    return f"{name}{f'-{chosen}' if chosen else ''}-{as_of}-{mode}"


def poller_run_name(params: dict[str, Any], when: datetime) -> str:
    """The service poller's name (as flows/service_poller.py gives it at start)."""
    return f"service-poller-{when:%Y-%m-%d-%H%M}-{'dry-run' if params.get('dry_run') else 'send'}"


def daily_run_name(params: dict[str, Any], when: datetime) -> str:
    """The daily schedule's name (as flows/daily_schedule.py gives it at start)."""
    mode = "dry-run" if params.get("dry_run") else "send"
    return f"daily-schedule-{params.get('as_of') or when.date().isoformat()}-{mode}"


def run_names_run_name(params: dict[str, Any], when: datetime) -> str:
    return f"run-names-{when:%Y-%m-%d-%H%M}"


NAMERS: dict[str, Namer] = {
    "campaign": campaign_run_name,
    "service-poller": poller_run_name,
    "daily-schedule": daily_run_name,
    "run-names": run_names_run_name,
}


# namers of runs due every few minutes: named by the minute they were due, not the one they started
BY_SCHEDULED_MINUTE = frozenset({"poller_run_name", "run_names_run_name"})
_SUFFIX = re.compile(r"-\d{1,3}$")


def with_suffix(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`, ... when runs of that name exist already (`taken`): a run can be
    found by its name, and the first one keeps the plain name."""
    if name not in taken:
        return name
    number = 2
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"


def taken_names(client: Any, name: str, run_id: Any = None) -> set[str]:
    """The names of the other flow runs named `name` or `name-<n>` (a sync Prefect client)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)), limit=PAGE
    )
    return {
        r.name
        for r in runs
        if str(r.id) != str(run_id) and (r.name == name or _SUFFIX.sub("", r.name) == name)
    }


def unique_name(name: str, run_id: Any) -> str:
    """`with_suffix` over the Prefect server's runs; `name` itself when the server cannot be asked."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return with_suffix(name, taken_names(client, name, run_id))
    except Exception:  # noqa: BLE001 - a name is not worth failing a run for
        return name


def name_at_start(
    current: str | None, namer: Namer, params: dict[str, Any], scheduled: datetime | None, now: datetime
) -> str:
    """The name a run takes when it starts: a name typed in the run form is kept; a random name, or
    the name given early for the scheduled time (with or without its `-<n>` suffix), becomes the name
    for the start time (`now`; the scheduled minute for runs due every few minutes)."""
    when = scheduled.astimezone(now.tzinfo) if scheduled and namer.__name__ in BY_SCHEDULED_MINUTE else now
    if current and not looks_generated(current):
        # names given while the run waited: from its parameters, or (a run created with only some
        # of them, the deployment's defaults merged later) without a shop day
        early = (
            {namer(p, scheduled.astimezone(now.tzinfo)) for p in (params, {**params, "as_of": None})}
            if scheduled
            else set()
        )
        if current not in early and _SUFFIX.sub("", current) not in early:
            return current  # chosen by a person
    name = namer(params, when)
    return current if current and _SUFFIX.sub("", current) == name else name  # keeps its `-<n>`


def runtime_name(namer: Namer) -> str:
    """For a flow's `flow_run_name`: `name_at_start` of the running flow run, with a short suffix when
    another run has that name already (`unique_name`); a name it has already is kept."""
    tz = get_settings().tz
    scheduled = flow_run.scheduled_start_time
    current = flow_run.name
    name = name_at_start(current, namer, dict(flow_run.parameters), scheduled, datetime.now(tz))
    return name if name == current else unique_name(name, flow_run.id)


def rename_waiting_runs(client: Any, tz: ZoneInfo, limit: int = 2000) -> list[tuple[str, str]]:
    """Give every waiting run of a Shopmail deployment that still has a random name the name its flow
    will give it; returns (old, new) pairs. `client`: a sync Prefect client."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    ours = FlowFilter(name=FlowFilterName(any_=list(NAMERS)))
    flows = {f.id: f.name for f in client.read_flows(flow_filter=ours)}
    if not flows:
        return []
    runs: list[Any] = []
    while True:  # the soonest first, every page (the API returns at most 200 at a time)
        page = client.read_flow_runs(
            flow_filter=ours,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(t) for t in WAITING])),
                deployment_id=FlowRunFilterDeploymentId(is_null_=False),
            ),
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[DEPLOYMENT_TAG])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=PAGE,
            offset=len(runs),
        )
        runs += page
        if len(page) < PAGE or len(runs) >= limit:
            break
    renamed = []
    defaults: dict[Any, dict[str, Any]] = {}  # deployment id -> its parameters
    for run in runs:
        namer = NAMERS.get(flows.get(run.flow_id, ""))
        if namer is None or not looks_generated(run.name):
            continue
        if run.deployment_id not in defaults:  # what the run will see: the deployment's, then its own
            defaults[run.deployment_id] = dict(client.read_deployment(run.deployment_id).parameters or {})
        when = run.expected_start_time or run.next_scheduled_start_time or datetime.now(tz)
        new = namer({**defaults[run.deployment_id], **run.parameters}, when.astimezone(tz))
        new = with_suffix(new, taken_names(client, new, run.id))
        if not _still_waiting(client, run):  # started meanwhile: its own name (flow_run_name) wins
            continue
        client.update_flow_run(run.id, name=new)
        renamed.append((run.name, new))
    return renamed


def _still_waiting(client: Any, run: Any) -> bool:
    """Whether `run` has neither started nor been renamed since it was listed (read again just
    before renaming, so a run that started in between keeps the name its flow gave it)."""
    now = client.read_flow_run(run.id)
    state = getattr(getattr(now, "state", None), "type", None)
    waiting = state is None or str(getattr(state, "value", state)) in WAITING
    return waiting and now.name == run.name


def watch_run_names(
    every_s: float,
    stop: threading.Event,
    log: Callable[[str], Any] = print,
    warn: Callable[[str], Any] | None = None,
) -> int:
    """`rename_waiting_runs` every `every_s` seconds until `stop` is set; a passing API error is
    logged and retried. Returns how many runs were renamed."""
    from prefect.client.orchestration import get_client

    tz, count = get_settings().tz, 0
    with get_client(sync_client=True) as client:
        while True:
            try:
                for old, new in rename_waiting_runs(client, tz):
                    count += 1
                    log(f"Named run {old!r} {new!r} before it starts")
            except Exception as exc:  # noqa: BLE001 - the server restarting must not stop the namer
                (warn or log)(f"Could not name waiting runs this time ({type(exc).__name__}: {exc})")
            if stop.wait(every_s):
                return count


def start_run_namer(every_s: float = 5.0) -> threading.Event:
    """Run `watch_run_names` in a daemon thread (for `shopmail serve`); set the event to stop it."""
    import logging

    stop = threading.Event()
    logger = logging.getLogger("prefect.shopmail.run_names")  # shown with Prefect's own lines
    thread = threading.Thread(
        target=watch_run_names,
        args=(every_s, stop, logger.info, logger.warning),
        name="shopmail-run-names",
        daemon=True,
    )
    thread.start()
    return stop


def _own_name() -> str:
    return runtime_name(run_names_run_name)


@flow(name="run-names", flow_run_name=_own_name, log_prints=True)
def run_names(
    watch_minutes: Annotated[int, Field(ge=0, le=1440), bounded_int(0, 1440)] = 0,
    every_seconds: Annotated[int, Field(ge=1, le=600), bounded_int(1, 600)] = 5,
) -> int:
    """Give the waiting runs of Shopmail's deployments their meaningful names before they start.

    Args:
        watch_minutes: Keep watching this many minutes (0: name the waiting runs once).
        every_seconds: How often to look while watching.
    """
    logger = get_run_logger()
    stop = threading.Event()
    if watch_minutes:
        deadline = time.monotonic() + timedelta(minutes=watch_minutes).total_seconds()
        threading.Thread(
            target=lambda: stop.wait(max(0.0, deadline - time.monotonic())) or stop.set(), daemon=True
        ).start()
    else:
        stop.set()  # one pass
    count = watch_run_names(every_seconds, stop, logger.info, logger.warning)
    logger.info("Named %s waiting run(s).", count)
    return count
