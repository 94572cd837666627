"""The production deploy (`shopmail deploy`: `prefect deploy --all` from the committed prefect.yaml
onto a work pool, then the run forms) gives every deployment on a real Prefect server the same run
form `shopmail serve` gives it: the `sale` deployment cannot start another campaign and offers only
the segments its data can evaluate."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.settings import Settings
from flows.deploy import pool_specs, runner_deployments, usable_segments
from flows.forms import segment_titles
from shopmail.campaigns import registry
from tests.prefect_server import ROOT, running_prefect_server

pytestmark = [pytest.mark.integration, pytest.mark.flow]


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{' '.join(args)}: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


async def _deployments(url: str) -> dict[str, dict]:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=url) as client:
        return {d.name: d.model_dump(mode="json") for d in await client.read_deployments(limit=200)}


def test_shopmail_deploy_gives_pool_deployments_the_served_forms(settings: Settings, tmp_path: Path) -> None:
    with running_prefect_server(tmp_path) as server:
        env = {
            **os.environ,
            "PREFECT_API_URL": server.url,
            "PREFECT_HOME": str(tmp_path / "cli-home"),
            "SHOPMAIL_PROJECT_DIR": str(ROOT),
        }
        _run(["-m", "prefect", "work-pool", "create", "shopmail", "--type", "process"], env)
        out = _run(["-m", "shopmail.cli", "deploy", "--prefect-file", str(ROOT / "prefect.yaml")], env)
        deployed = asyncio.run(_deployments(server.url))

    specs = {spec.name: spec for spec in pool_specs()}
    assert set(deployed) == set(specs), out
    assert f"Run forms set for {len(specs)} deployments" in out
    served = {
        d.name: d._parameter_openapi_schema.model_dump(exclude_unset=True) for d in runner_deployments()
    }
    committed = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    for name, deployment in deployed.items():
        assert deployment["work_pool_name"] == "shopmail", name
        assert deployment["enforce_parameter_schema"] is True, name
        assert deployment["parameters"] == committed[name]["parameters"], name
        if name in served:  # exactly the form `shopmail serve` gives the deployment
            assert deployment["parameter_openapi_schema"] == served[name], name
    assert set(served) == set(specs) - {"run-names"}

    sale = deployed["sale"]
    form = sale["parameter_openapi_schema"]["properties"]
    assert "campaign" not in form and sale["parameters"]["campaign"] == "sale"  # runs `sale` only
    assert "anyOf" not in str(form) and "default" not in form["segment"]
    usable = set(usable_segments(registry()["sale"].datasets))
    assert form["segment"]["enum"] == [t for n, t in segment_titles().items() if n in usable]
    new_arrivals = deployed["new_arrivals"]["parameter_openapi_schema"]["properties"]
    assert "VIP" not in new_arrivals["segment"]["enum"]  # reads orders, which new_arrivals does not
    assert "Женщины" in new_arrivals["segment"]["enum"]
    assert deployed["wakeup"]["schedules"][0]["schedule"]["timezone"] == "Europe/Moscow"
    names = deployed["run-names"]
    assert names["parameters"] == {"watch_minutes": 59}
    assert (
        names["parameter_openapi_schema"]["properties"]["watch_minutes"]["title"] == "Keep watching (minutes)"
    )
    # workers change to the project checkout
    step = sale["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == str(ROOT)  # SHOPMAIL_PROJECT_DIR of `shopmail deploy`, resolved then
    # and the runs log as `shopmail serve`'s do (config/logging.yml): every deployment's job variables
    for name, deployment in deployed.items():
        env = deployment["job_variables"]["env"]
        assert env["PREFECT_LOGGING_SETTINGS_PATH"] == str(ROOT / "config" / "logging.yml"), name
