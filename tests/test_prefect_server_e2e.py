"""End to end as operators run it: a real Prefect server, `shopmail serve`, a run triggered through
the API with parameters, mails at the local SendGrid server, artifacts read back through the API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from config.settings import Settings
from flows.deploy import deployment_specs
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from tests.prefect_server import (
    PrefectServer,
    log_tail,
    running_prefect_server,
    sendgrid_serve_env,
    shopmail_serve,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.flow]
AS_OF = date(2026, 11, 23)


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """A real Prefect server on a loopback port with its own PREFECT_HOME and SQLite DB."""
    with running_prefect_server(tmp_path) as server:
        yield server


def test_served_deployment_runs_with_parameters_and_leaves_artifacts(
    prefect_server: PrefectServer, settings: Settings, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=3, today=AS_OF)
    with running_sink() as sink:
        env = sendgrid_serve_env(prefect_server, tmp_path, settings.data_dir, sink.url)
        log = tmp_path / "serve.log"
        with shopmail_serve(env, log) as serve, temporary_settings({PREFECT_API_URL: prefect_server.url}):

            async def deployments() -> list[str]:
                async with get_client() as client:
                    return [d.name for d in await client.read_deployments()]

            expected = {spec.name for spec in deployment_specs()}
            wait_for(lambda: expected <= set(asyncio.run(deployments())), 120, "serve", serve, log)

            async def trigger_and_wait():
                from prefect.deployments import run_deployment

                run = await run_deployment(
                    "campaign/wakeup",
                    parameters={"as_of": AS_OF.isoformat(), "limit": 12},
                    timeout=240,
                )
                async with get_client() as client:
                    artifacts = await client.read_artifacts(
                        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["campaign-wakeup"])),
                        flow_run_filter=FlowRunFilter(id={"any_": [run.id]}),
                    )
                    deployment = await client.read_deployment_by_name("campaign/new_arrivals")
                return run, artifacts, deployment

            run, artifacts, new_arrivals = asyncio.run(trigger_and_wait())

        assert run.state.is_completed(), log_tail(log)
        assert run.name == f"wakeup-{AS_OF.isoformat()}-send"
        customers = [
            int(p["custom_args"]["customer_id"])
            for m in sink.store.messages
            for p in m.payload["personalizations"]
        ]
        assert len(customers) == len(set(customers)) == 12  # the limit parameter reached the run
        markdown = artifacts[0].data
        assert "| sent | 12 |" in markdown and "## Sample mail" in markdown
        # marketers see mass mailings default to a dry run; the schedule itself sends
        assert new_arrivals.parameters["dry_run"] is True
        assert new_arrivals.schedules[0].schedule.cron == "0 12 * * 5"
        assert new_arrivals.schedules[0].schedule.timezone == "Europe/Moscow"
        assert new_arrivals.schedules[0].parameters == {"dry_run": False}
