"""SHOPMAIL_TASK_RUNNER=dask: the send batches of one campaign on a Dask cluster (Prefect's
`DaskTaskRunner`, prefect-dask).

The integration test starts a `distributed.LocalCluster` of two worker processes itself and points
SHOPMAIL_DASK_ADDRESS at its scheduler, as a real deployment points it at a remote one: shop and state
DB on PostgreSQL, mail to the local SendGrid server. The workers are started after the SHOPMAIL_*
environment is set, so they have it (a remote worker needs the same variables in its own environment).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from config.settings import Settings, TaskRunnerKind, get_settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import running_sink
from shopmail.state import state_db
from shopmail.state.schema import send_ledger
from tests.test_shop_databases import SERVERS, _scratch_database

AS_OF = date(2026, 11, 23)
BATCH_SIZE = 40
PG_URL = "postgresql+psycopg://shopmail@db.internal/shopmail"


def test_dask_without_an_address_runs_on_a_local_cluster_of_workers_processes(settings, monkeypatch) -> None:
    from prefect_dask import DaskTaskRunner

    from flows.campaign import configured_campaign_flow

    monkeypatch.setenv("SHOPMAIL_TASK_RUNNER", "dask")
    monkeypatch.setenv("SHOPMAIL_WORKERS", "3")
    get_settings.cache_clear()
    runner = configured_campaign_flow().task_runner
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address is None
    assert runner.cluster_class == "distributed.LocalCluster"
    assert runner.cluster_kwargs["n_workers"] == 3
    assert runner.cluster_kwargs["processes"] is True
    assert runner.cluster_kwargs["threads_per_worker"] == 1
    assert get_settings().state_url_resolved.startswith("sqlite")  # allowed: same machine, same files


def test_dask_with_an_address_connects_to_that_scheduler(settings, monkeypatch) -> None:
    from flows.campaign import configured_campaign_flow

    for var in ("SHOPMAIL_STATE_DB_URL", "SHOPMAIL_SHOP_DB_URL"):
        monkeypatch.setenv(var, PG_URL)
    monkeypatch.setenv("SHOPMAIL_TASK_RUNNER", "dask")
    monkeypatch.setenv("SHOPMAIL_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    get_settings.cache_clear()
    runner = configured_campaign_flow().task_runner
    assert runner.address == "tcp://10.0.0.5:8786"
    assert runner.cluster_class is None and runner.cluster_kwargs == {}


@pytest.mark.parametrize(
    ("urls", "named"),
    [
        ({}, ["SHOPMAIL_STATE_DB_URL", "SHOPMAIL_SHOP_DB_URL"]),
        ({"shop_db_url": PG_URL}, ["SHOPMAIL_STATE_DB_URL"]),
        ({"state_db_url": PG_URL, "shop_db_url": "sqlite:////srv/shop.sqlite"}, ["SHOPMAIL_SHOP_DB_URL"]),
    ],
)
def test_a_remote_cluster_with_sqlite_databases_is_refused(
    tmp_path, urls: dict[str, str], named: list[str]
) -> None:
    from shopmail.run.errors import explain

    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, task_runner="dask", dask_address="tcp://10.0.0.5:8786", **urls)
    message = explain(caught.value).message
    assert message.startswith("Configuration error: SHOPMAIL_DASK_ADDRESS: a remote Dask cluster")
    assert all(name in message for name in named)
    assert "PostgreSQL" in message
    # on servers it is fine; and a local cluster may use this machine's SQLite files
    Settings(task_runner="dask", dask_address="tcp://10.0.0.5:8786", state_db_url=PG_URL, shop_db_url=PG_URL)
    Settings(data_dir=tmp_path, task_runner="dask")


def test_the_cli_refuses_a_remote_cluster_with_sqlite(settings, monkeypatch) -> None:
    from typer.testing import CliRunner

    from shopmail.cli import app

    monkeypatch.setenv("SHOPMAIL_TASK_RUNNER", "dask")
    monkeypatch.setenv("SHOPMAIL_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["run", "sale", "--dry-run"])
    assert result.exit_code == 2
    assert "SHOPMAIL_DASK_ADDRESS" in result.output and "SHOPMAIL_STATE_DB_URL" in result.output
    assert "Traceback" not in result.output


def _batches_run_here(dask_worker) -> tuple[int, list[str]]:
    """On a Dask worker: its process id and the send-batch tasks it executed (from its own log of
    task transitions)."""
    keys = {
        str(entry[0])
        for entry in dask_worker.state.log
        if str(entry[0]).startswith("send_batch") and entry[1:3] == ("executing", "memory")
    }
    return os.getpid(), sorted(keys)


@pytest.fixture
def postgres_sendgrid_env(settings: Settings, monkeypatch) -> Iterator[tuple[Settings, object]]:
    """Shop and state DB in scratch PostgreSQL databases, mail to the local SendGrid server."""
    scratch = []
    for var in ("SHOPMAIL_SHOP_DB_URL", "SHOPMAIL_STATE_DB_URL"):
        gen = _scratch_database(SERVERS["postgresql"])
        monkeypatch.setenv(var, next(gen))
        scratch.append(gen)
    try:
        with running_sink() as sink:
            monkeypatch.setenv("SHOPMAIL_MAIL_PROVIDER", "sendgrid")
            monkeypatch.setenv("SHOPMAIL_SENDGRID_HOST", sink.url)
            monkeypatch.setenv("SHOPMAIL_SENDGRID_API_KEY", "SG.test-key-not-a-secret")
            monkeypatch.setenv("SHOPMAIL_SENDGRID_BACKOFF_S", "0.05")
            monkeypatch.setenv("SHOPMAIL_SEND_BATCH_SIZE", str(BATCH_SIZE))
            get_settings.cache_clear()
            yield get_settings(), sink
    finally:
        for gen in scratch:
            next(gen, None)


@pytest.mark.flow
@pytest.mark.integration
def test_a_campaign_on_a_two_worker_dask_cluster_sends_every_mail_exactly_once(
    prefect_harness, postgres_sendgrid_env, monkeypatch
) -> None:
    from distributed import Client, LocalCluster

    from flows.campaign import configured_campaign_flow

    settings, sink = postgres_sendgrid_env
    generate_demo_shop(settings.shop_url_resolved, customers=1500, seed=5, today=AS_OF)
    # the workers are spawned now: they inherit the SHOPMAIL_* environment set by the fixture
    with (
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,  # the runner must use the address
    ):
        monkeypatch.setenv("SHOPMAIL_TASK_RUNNER", "dask")
        monkeypatch.setenv("SHOPMAIL_DASK_ADDRESS", cluster.scheduler_address)
        get_settings.cache_clear()
        assert get_settings().task_runner == TaskRunnerKind.dask
        run = configured_campaign_flow()
        assert run.task_runner.address == cluster.scheduler_address

        report = run(campaign="sale", as_of=AS_OF, preapproved=True)
        per_worker = client.run(_batches_run_here)
        received = list(sink.store.messages)
        again = run(campaign="sale", as_of=AS_OF, preapproved=True)
        after_rerun = len(sink.store.messages)

    per_customer = Counter(
        int(p["custom_args"]["customer_id"]) for m in received for p in m.payload["personalizations"]
    )
    counts = report.counts()
    assert counts["sent"] > 3 * BATCH_SIZE  # several batches
    assert counts["failed"] == counts["rejected"] == 0
    assert max(per_customer.values()) == 1  # nobody twice
    assert sum(per_customer.values()) == counts["sent"]

    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.customer_id, send_ledger.c.status).where(send_ledger.c.campaign == "sale")
        ).all()
    assert {r.status for r in rows} <= {"sent", "holdout"}
    assert {r.customer_id for r in rows if r.status == "sent"} == set(per_customer)  # none lost
    assert len(rows) == counts["sent"] + counts["holdout"]

    # the batches really ran in both worker processes, none in this one
    batches_per_worker = {pid: len(keys) for pid, keys in per_worker.values()}
    print("send batches per Dask worker process:", batches_per_worker)
    pids = set(batches_per_worker)
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(n > 0 for n in batches_per_worker.values())
    assert sum(batches_per_worker.values()) == math.ceil(counts["sent"] / BATCH_SIZE)

    assert again.counts()["sent"] == 0  # a rerun sends nothing
    assert after_rerun == len(received)
