"""End to end as operators run it: a real Prefect server, `shopmail serve`, a run triggered through
the API with parameters, mails at the local SendGrid server, artifacts read back through the API."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from flows.deploy import deployment_specs
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink

pytestmark = [pytest.mark.integration, pytest.mark.flow]
AS_OF = date(2026, 11, 23)
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _wait_for(check, timeout_s: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what}: process exited\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: timed out\n{log.read_text()[-3000:]}")


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """A real Prefect server on a loopback port with its own PREFECT_HOME and SQLite DB."""
    port = _free_port()
    home = tmp_path / "prefect-home"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_for(
            lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 120, "server", process, log
        )
        yield url
    finally:
        _stop(process)


def test_served_deployment_runs_with_parameters_and_leaves_artifacts(
    prefect_server: str, settings: Settings, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=3, today=AS_OF)
    with running_sink() as sink:
        env = {
            **os.environ,
            "PREFECT_API_URL": prefect_server,
            "PREFECT_HOME": str(tmp_path / "serve-home"),
            "SHOPMAIL_DATA_DIR": str(settings.data_dir),
            "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
            "SHOPMAIL_SENDGRID_HOST": sink.url,
            "SHOPMAIL_SENDGRID_API_KEY": "SG.e2e-key",
            "SHOPMAIL_UNSUBSCRIBE_SECRET": "test-secret",
        }
        log = tmp_path / "serve.log"
        serve = subprocess.Popen(
            [sys.executable, "-m", "shopmail.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            with temporary_settings({PREFECT_API_URL: prefect_server}):

                async def deployments() -> list[str]:
                    async with get_client() as client:
                        return [d.name for d in await client.read_deployments()]

                expected = {spec.name for spec in deployment_specs()}
                _wait_for(lambda: expected <= set(asyncio.run(deployments())), 120, "serve", serve, log)

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
        finally:
            _stop(serve)

        assert run.state.is_completed(), log.read_text()[-3000:]
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
