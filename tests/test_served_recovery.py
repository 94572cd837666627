"""A served campaign run SIGKILLed mid-send, and nobody reruns it: on a real Prefect server with
`shopmail serve` (the `sale` and `recovery` deployments), the recovery deployment's own schedule
closes the dead run and sends what it left open. Every mail arrives exactly once within the lease +
10 minutes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from config.settings import Settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.devtools.sink_faults import Faults
from shopmail.state.schema import run_summaries
from tests.prefect_server import (
    PrefectServer,
    log_tail,
    running_prefect_server,
    sendgrid_serve_env,
    shopmail_serve,
    wait_for,
)
from tests.process_kill import descendants

pytestmark = [pytest.mark.integration, pytest.mark.flow]
AS_OF = date(2026, 11, 23)
LEASE_S = 20
DEADLINE_S = LEASE_S + 600  # lease + 10 minutes


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    with running_prefect_server(tmp_path) as server:
        yield server


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_served_run_killed_mid_send_finishes_itself_exactly_once(
    prefect_server: PrefectServer, settings: Settings, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from shopmail.campaigns import get_campaign
    from shopmail.db import get_engine
    from shopmail.run.pipeline import select_recipients
    from shopmail.shop.extract import extract
    from shopmail.state import state_db

    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=3, today=AS_OF)
    spec = get_campaign("sale")
    frames = extract(get_engine(settings.shop_url_resolved), spec.datasets, AS_OF, settings.tz, 365)
    state = state_db.upgrade(settings.state_url_resolved)
    eligible = set(select_recipients(spec, frames, AS_OF, settings, state, set()).eligible["customer_id"])

    with running_sink() as sink:
        sink.store.set_faults(Faults(slow_ms=250, answer_delay_ms=250))
        env = sendgrid_serve_env(prefect_server, tmp_path, settings.data_dir, sink.url) | {
            "SHOPMAIL_SERVE_ONLY": "sale,recovery",
            "SHOPMAIL_RECOVERY_CRON": "* * * * *",
            "SHOPMAIL_CLAIM_LEASE_SECONDS": str(LEASE_S),
            "SHOPMAIL_DOUBT_GRACE_MINUTES": "0.5",
            "SHOPMAIL_SEND_BATCH_SIZE": "40",
            "SHOPMAIL_SENDGRID_CONCURRENCY": "1",
        }
        log = tmp_path / "serve.log"
        with shopmail_serve(env, log) as serve, temporary_settings({PREFECT_API_URL: prefect_server.url}):

            async def deployments() -> set[str]:
                async with get_client() as client:
                    return {d.name for d in await client.read_deployments()}

            wait_for(lambda: {"sale", "recovery"} <= asyncio.run(deployments()), 180, "serve", serve, log)

            async def start() -> None:
                from prefect.deployments import run_deployment

                await run_deployment(
                    "campaign/sale",
                    parameters={"as_of": AS_OF.isoformat(), "dry_run": False, "preapproved": True},
                    timeout=0,
                )

            asyncio.run(start())

            def at_server() -> int:
                return sum(len(m.payload["personalizations"]) for m in sink.store.messages)

            wait_for(lambda: at_server() >= len(eligible) // 4, 300, "first mails", serve, log)
            # the flow run's own process: `serve` starts each run as `python -m prefect.engine`
            victims = [p for p in descendants(serve.pid) if "prefect.engine" in _cmdline(p)]
            assert victims, [_cmdline(p) for p in descendants(serve.pid)]
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            assert at_server() < len(eligible)

            def all_there() -> bool:
                return at_server() >= len(eligible)

            wait_for(all_there, DEADLINE_S, "every mail after the kill", serve, log)
            took = time.monotonic() - killed_at
            time.sleep(3)  # nothing more arrives
            per_customer = Counter(
                int(p["custom_args"]["customer_id"])
                for m in sink.store.messages
                for p in m.payload["personalizations"]
            )
    print(f"all mails at the server {took:.0f} s after the kill")
    assert max(per_customer.values()) == 1, "a customer got the mail twice"
    assert set(per_customer) == eligible, log_tail(log)
    assert took <= DEADLINE_S
    with create_engine(settings.state_url_resolved).connect() as conn:
        statuses = [r.status for r in conn.execute(select(run_summaries.c.status, run_summaries.c.campaign))]
    assert "crashed" in statuses and "running" not in statuses
