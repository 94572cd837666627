"""Runs carry a meaningful name from the moment they exist: Prefect's random names (the server's
coolname slug for scheduler- and API-created runs, the UI form's suggestion) are replaced while the
run still waits, from its parameters and its scheduled shop day; a name a person typed is kept."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import httpx
import pytest

from config.settings import Settings
from flows.run_names import (
    V1_UI_GREEK,
    V2_UI_ADJECTIVES,
    campaign_run_name,
    looks_generated,
    name_at_start,
    poller_run_name,
    rename_waiting_runs,
    with_suffix,
)

MSK = ZoneInfo("Europe/Moscow")
UI = Path(__import__("prefect").__file__).parent / "server"


def test_prefect_random_names_are_recognised_and_chosen_names_are_not() -> None:
    from prefect.utilities.names import generate_slug

    assert all(looks_generated(generate_slug(2)) for _ in range(3000))  # the server's names
    for name in ("Rustic-Koala", "Sleek-Vicuña", "theta4-cassiopeiae-nebula", "alpha537-canis-majoris"):
        assert looks_generated(name), name
    for name in (
        "sale-test",
        "big-sale",
        "Черная пятница: проверка",
        "wakeup-2026-11-27-send",
        "new_arrivals-women-2026-11-27-dry-run",
        "Rustic-Elephant",  # the UI's V2 suggestions take animals of at most 6 characters
    ):
        assert not looks_generated(name), name


def test_the_ui_suggestions_are_those_of_the_installed_prefect_ui() -> None:
    """The run form's suggested names, read from the installed UI bundles (V2 is the default UI)."""
    v2 = "".join(p.read_text() for p in (UI / "ui-v2" / "assets").glob("deployment_._id.run-*.js"))
    adjectives = re.search(r"\[(`Awesome`[^\]]*)\]", v2).group(1).replace("`", "").split(",")
    assert set(adjectives) == set(V2_UI_ADJECTIVES.split("|"))
    animals = re.search(r"`(Aardvark\.[^`]*)`", v2).group(1).split(".")
    assert all(looks_generated(f"{a}-{animal}") for a in adjectives for animal in animals if len(animal) <= 6)
    v1 = "".join(p.read_text() for p in (UI / "ui" / "assets").glob("index-*.js"))
    letters = re.search(r"`(alpha\.alpha2[^`]*)`", v1).group(1).split(".")
    assert {re.sub(r"(\d+|RANDOM)$", "", g) for g in letters} == set(V1_UI_GREEK.split("|"))
    stars = [s for s in re.search(r"`(andromedae\.[^`]*)`", v1).group(1).split(".") if s]
    suffixes = re.search(r"`(a\.b\.c\.d\.e\.f[^`]*)`", v1).group(1).split(".")
    assert all(
        looks_generated(f"{g}{n}-{s}{f'-{x}' if x else ''}")
        for g in ("alpha", "omega")
        for n in ("", "7", "537")
        for s in stars
        for x in ("", *suffixes[:3])
    )


def test_an_empty_shop_day_is_the_day_of_the_scheduled_start() -> None:
    params = {"campaign": "Распродажа", "segment": "Женщины", "dry_run": True}
    late_evening = datetime(2026, 11, 27, 23, 30, tzinfo=MSK)
    assert campaign_run_name(params, late_evening) == "sale-women-2026-11-27-dry-run"
    assert (
        campaign_run_name({**params, "as_of": "2026-12-01"}, late_evening) == "sale-women-2026-12-01-dry-run"
    )
    assert campaign_run_name({"campaign": "wakeup"}, late_evening) == "wakeup-2026-11-27-send"


def test_a_typed_name_is_kept_when_the_run_starts() -> None:
    params = {"campaign": "wakeup"}
    scheduled = datetime(2026, 11, 27, 23, 59, tzinfo=MSK)
    started_late = datetime(2026, 11, 28, 0, 1, tzinfo=MSK)
    assert name_at_start("Проверка перед акцией", campaign_run_name, params, scheduled, started_late) == (
        "Проверка перед акцией"
    )
    assert name_at_start("gentle-otter", campaign_run_name, params, scheduled, started_late) == (
        "wakeup-2026-11-28-send"
    )
    # the name given while it waited (its scheduled day) becomes the day the run really works on
    assert name_at_start("wakeup-2026-11-27-send", campaign_run_name, params, scheduled, started_late) == (
        "wakeup-2026-11-28-send"
    )
    # given while it waited without the shop day it runs on (the form's day merged later): replaced
    fixed_day = {**params, "as_of": "2026-11-23"}
    assert name_at_start("wakeup-2026-11-27-send", campaign_run_name, fixed_day, scheduled, started_late) == (
        "wakeup-2026-11-23-send"
    )


def test_a_suffix_only_when_the_name_is_taken() -> None:
    assert with_suffix("wakeup-2026-12-07-send", set()) == "wakeup-2026-12-07-send"
    assert with_suffix("wakeup-2026-12-07-send", {"wakeup-2026-12-07-send"}) == "wakeup-2026-12-07-send-2"
    taken = {"wakeup-2026-12-07-send", "wakeup-2026-12-07-send-2"}
    assert with_suffix("wakeup-2026-12-07-send", taken) == "wakeup-2026-12-07-send-3"


def test_a_poll_is_named_from_the_minute_it_was_due() -> None:
    due = datetime(2026, 12, 7, 0, 4, tzinfo=MSK)
    started = datetime(2026, 12, 7, 3, 7, tzinfo=MSK)  # the worker was busy for three hours
    assert name_at_start("gentle-otter", poller_run_name, {}, due, started) == (
        "service-poller-2026-12-07-0004-send"
    )
    # given early for that minute (with its suffix): kept when it starts
    assert name_at_start("service-poller-2026-12-07-0004-send-2", poller_run_name, {}, due, started) == (
        "service-poller-2026-12-07-0004-send-2"
    )


@pytest.mark.flow
def test_runs_of_the_same_name_get_a_short_suffix(prefect_harness, settings: Settings) -> None:
    from prefect.client.orchestration import get_client

    from flows.campaign import campaign_flow
    from shopmail.devtools.demo_shop import generate_demo_shop

    day = datetime(2026, 11, 23).date()
    generate_demo_shop(settings.shop_url_resolved, customers=200, seed=3, today=day)
    first = campaign_flow(campaign="welcome", as_of=day, dry_run=True)
    second = campaign_flow(campaign="welcome", as_of=day, dry_run=True)
    with get_client(sync_client=True) as client:
        names = [client.read_flow_run(r.run_id).name for r in (first, second)]
    base = "welcome-2026-11-23-dry-run"
    assert re.fullmatch(rf"{base}(-\d+)?", names[0]) and names[1] != names[0], names
    assert re.fullmatch(rf"{base}-\d+", names[1]), names


class _Client:
    """The reads and the update `rename_waiting_runs` makes, in memory."""

    def __init__(
        self, runs: list[SimpleNamespace], defaults: dict[Any, dict[str, Any]] | None = None
    ) -> None:
        self.flow_id, self.runs, self.updates = uuid4(), runs, []
        self.defaults = defaults or {}

    def read_deployment(self, deployment_id: Any) -> SimpleNamespace:
        return SimpleNamespace(parameters=self.defaults.get(deployment_id, {}))

    def read_flows(self, **_: Any) -> list[SimpleNamespace]:
        return [SimpleNamespace(id=self.flow_id, name="campaign")]

    def read_flow_runs(self, **_: Any) -> list[SimpleNamespace]:
        for run in self.runs:
            run.flow_id = self.flow_id
        return self.runs

    def read_flow_run(self, run_id: Any) -> SimpleNamespace:
        return next(run for run in self.runs if run.id == run_id)

    def update_flow_run(self, run_id: Any, name: str) -> None:
        self.updates.append((run_id, name))


def test_waiting_runs_are_named_from_their_scheduled_shop_day() -> None:
    utc_evening = datetime(2026, 11, 27, 22, 30, tzinfo=ZoneInfo("UTC"))  # 01:30 on the 28th in Moscow
    runs = [
        SimpleNamespace(id=1, name="gentle-otter", parameters={"campaign": "wakeup"}),
        SimpleNamespace(id=2, name="Rustic-Koala", parameters={"campaign": "sale", "dry_run": True}),
        SimpleNamespace(id=3, name="Акция для своих", parameters={"campaign": "sale"}),
        # created with only some parameters: the deployment's shop day applies (merged at creation)
        SimpleNamespace(id=4, name="big-bear", parameters={"dry_run": True}, deployment_id="d-sale"),
        # listed while waiting, started before the rename: the name its flow gave it stays
        SimpleNamespace(
            id=5, name="quick-fox", parameters={"campaign": "sale"}, state=SimpleNamespace(type="RUNNING")
        ),
    ]
    for run in runs:
        run.expected_start_time, run.next_scheduled_start_time = utc_evening, utc_evening
        run.deployment_id = getattr(run, "deployment_id", "d-other")
    client = _Client(runs, {"d-sale": {"campaign": "sale", "as_of": "2026-11-23"}})
    assert rename_waiting_runs(client, MSK) == [
        ("gentle-otter", "wakeup-2026-11-28-send"),
        ("Rustic-Koala", "sale-2026-11-28-dry-run"),
        ("big-bear", "sale-2026-11-23-dry-run"),
    ]
    assert client.updates[:2] == [(1, "wakeup-2026-11-28-send"), (2, "sale-2026-11-28-dry-run")]


# --- on a real Prefect server --------------------------------------------------------------------


async def _create_runs(url: str, deployment_id: str, now: datetime) -> dict[str, dict[str, Any]]:
    """Runs of the sale deployment as the UI creates them (no name, or the form's suggestion, or a
    typed one), all scheduled ahead so that nothing starts during the test."""
    from prefect.client.orchestration import PrefectClient
    from prefect.states import Scheduled

    made = {}
    async with PrefectClient(api=url) as client:
        for key, name, params, ahead in [
            ("no name", None, {"segment": "Женщины"}, timedelta(hours=1)),
            ("tomorrow", None, {}, timedelta(hours=30)),
            ("ui suggestion", "Rustic-Koala", {"dry_run": False, "as_of": "2026-12-01"}, timedelta(hours=1)),
            ("typed", "Черная пятница: проверка", {}, timedelta(hours=1)),
        ]:
            run = await client.create_flow_run_from_deployment(
                deployment_id, parameters=params, name=name, state=Scheduled(scheduled_time=now + ahead)
            )
            made[key] = {"id": str(run.id), "created_name": run.name, "at": now + ahead}
    return made


@pytest.mark.integration
@pytest.mark.flow
def test_shopmail_serve_names_waiting_runs_before_they_start(settings: Settings, tmp_path: Path) -> None:
    from tests.prefect_server import running_prefect_server, shopmail_serve, wait_for

    with running_prefect_server(tmp_path) as server, httpx.Client(base_url=server.url, timeout=10) as api:
        env = {
            **os.environ,
            "PREFECT_API_URL": server.url,
            "PREFECT_HOME": str(tmp_path / "serve-home"),
            "SHOPMAIL_SERVE_ONLY": "wakeup,sale",
        }
        log = tmp_path / "serve.log"
        with shopmail_serve(env, log) as serve:

            def deployment(name: str) -> dict | None:
                response = api.get(f"/deployments/name/campaign/{name}")
                return response.json() if response.status_code == 200 else None

            sale = wait_for(lambda: deployment("sale"), 120, "serve registers sale", serve, log)
            wakeup = wait_for(lambda: deployment("wakeup"), 60, "serve registers wakeup", serve, log)
            made = asyncio.run(_create_runs(server.url, sale["id"], datetime.now(MSK)))
            assert looks_generated(made["no name"]["created_name"])  # the server's random name

            def runs(deployment_id: str) -> list[dict[str, Any]]:
                body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "limit": 50}
                return api.post("/flow_runs/filter", json=body).json()

            def scheduler_runs_named() -> list[dict[str, Any]] | None:
                found = [r for r in runs(wakeup["id"]) if r["auto_scheduled"]]
                return found if found and not any(looks_generated(r["name"]) for r in found) else None

            scheduled = wait_for(scheduler_runs_named, 90, "the scheduler's runs named", serve, log)

            def sale_runs_named() -> dict[str, dict[str, Any]] | None:
                now = {r["id"]: r for r in runs(sale["id"])}
                named = {k: now[m["id"]] for k, m in made.items()}
                return named if not any(looks_generated(r["name"]) for r in named.values()) else None

            named = wait_for(sale_runs_named, 30, "the hand-made runs named", serve, log)
        serve_log = log.read_text(errors="replace")

        for run in scheduled:  # named from its own scheduled shop day, still waiting
            day = datetime.fromisoformat(run["expected_start_time"]).astimezone(MSK).date()
            assert run["name"] == f"wakeup-{day.isoformat()}-send" and run["state_type"] == "SCHEDULED"
        assert len({r["name"] for r in scheduled}) == len(scheduled) >= 2  # one a day, days ahead
        day = made["no name"]["at"].date().isoformat()
        assert named["no name"]["name"] == f"sale-women-{day}-dry-run"
        assert named["tomorrow"]["name"] == f"sale-{made['tomorrow']['at'].date().isoformat()}-dry-run"
        assert named["ui suggestion"]["name"] == "sale-2026-12-01-send"
        assert named["typed"]["name"] == "Черная пятница: проверка"  # a person's name is kept
        assert all(r["state_type"] == "SCHEDULED" for r in named.values())  # before they start
        assert "before it starts" in serve_log

        # on a work pool the `run-names` flow does the same (here one pass, in this process)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.run_names import run_names

        again = asyncio.run(_create_runs(server.url, sale["id"], datetime.now(MSK)))["no name"]
        with temporary_settings({PREFECT_API_URL: server.url}):
            assert run_names(watch_minutes=0) >= 1
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10, at_exit=False)  # the flow's logs, before the server stops
        renamed = api.get(f"/flow_runs/{again['id']}").json()
        # the first run of that name waits too: this one gets a short suffix, so each can be found
        assert renamed["name"] == f"sale-women-{again['at'].date().isoformat()}-dry-run-2"
        assert renamed["state_type"] == "SCHEDULED"
