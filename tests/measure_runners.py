"""Wall time of one `sale` campaign per task runner: threads, processes, a local Dask cluster started
by the run, and a standing Dask cluster (`SHOPMAIL_DASK_ADDRESS`) with warm workers
(docs/operating/scale-out.md).

Shop and state DB on the local PostgreSQL (a fresh state DB per run), mail to the local SendGrid
server in its own process (or the memory provider); one Prefect test server for all runs. Not a
test: `CUSTOMERS=60000 python -m tests.measure_runners` from the project root (MODES, PROVIDERS
narrow it down). Scratch databases are dropped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
DATA = Path(tempfile.mkdtemp(prefix="shopmail-runners-"))
os.environ.update(
    GX_ANALYTICS_ENABLED="False",
    DO_NOT_TRACK="1",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    SHOPMAIL_UNSUBSCRIBE_SECRET="measure-unsubscribe-secret",
    SHOPMAIL_COUPON_SECRET="measure-coupon-secret",
    SHOPMAIL_SENDER_EMAIL="news@mailings.test",
    SHOPMAIL_DATA_DIR=str(DATA),
    SHOPMAIL_SENDGRID_API_KEY="SG.measure",
    SHOPMAIL_SENDGRID_HOST="http://127.0.0.1:8035",
)
PG = os.environ.get("SHOPMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AS_OF = date(2026, 11, 23)
CUSTOMERS = int(os.environ.get("CUSTOMERS", "10000"))


def scratch_db(tag: str) -> str:
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    name = f"shopmail_measure_{tag}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return PG.rsplit("/", 1)[0] + "/" + name


def drop_scratch_dbs() -> None:
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        query = text("SELECT datname FROM pg_database WHERE datname LIKE 'shopmail_measure_%'")
        for name in conn.execute(query).scalars().all():
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def _warm() -> None:
    """Import what a batch needs (a standing cluster's workers have it imported)."""
    import tasks.send  # noqa: F401
    from flows.campaign import campaign_flow  # noqa: F401


def run_once(provider: str, mode: str) -> dict:
    from distributed import Client, LocalCluster

    from config.settings import get_settings
    from flows.campaign import configured_campaign_flow
    from shopmail.db import get_engine

    os.environ.update(
        SHOPMAIL_STATE_DB_URL=scratch_db("state"),
        SHOPMAIL_MAIL_PROVIDER=provider,
        SHOPMAIL_OUTBOX_DIR=str(DATA / f"outbox-{uuid.uuid4().hex[:6]}"),
        SHOPMAIL_TASK_RUNNER=mode.split("-")[0],
        SHOPMAIL_WORKERS="2",
    )
    os.environ.pop("SHOPMAIL_DASK_ADDRESS", None)
    cluster = None
    if mode == "dask-warm":  # a standing cluster whose workers have the code imported
        cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
        with Client(cluster, set_as_default=False) as client:
            client.run(_warm)
        os.environ["SHOPMAIL_DASK_ADDRESS"] = cluster.scheduler_address
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        started = time.perf_counter()
        report = configured_campaign_flow()(campaign="sale", as_of=AS_OF, preapproved=True)
        wall = time.perf_counter() - started
    finally:
        if cluster is not None:
            cluster.close()
    sent = report.counts()["sent"]
    return {
        "provider": provider,
        "mode": mode,
        "sent": sent,
        "wall_s": round(wall, 1),
        "mails_per_s": round(sent / wall),
    }


def main() -> None:
    from prefect.testing.utilities import prefect_test_harness

    from shopmail.devtools.demo_shop import generate_demo_shop

    shop = scratch_db("shop")
    os.environ["SHOPMAIL_SHOP_DB_URL"] = shop
    started = time.perf_counter()
    generate_demo_shop(shop, customers=CUSTOMERS, seed=3, today=AS_OF)
    print(
        f"demo shop, {CUSTOMERS:,} customers on PostgreSQL: {time.perf_counter() - started:.1f} s", flush=True
    )
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shopmail.devtools.sendgrid_sink",
            "--port",
            "8035",
            "--api-key",
            "SG.measure",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)
    modes = [m for m in os.environ.get("MODES", "threads,processes,dask,dask-warm").split(",") if m]
    providers = [p for p in os.environ.get("PROVIDERS", "sendgrid,memory").split(",") if p]
    results = []
    try:
        with prefect_test_harness(server_startup_timeout=120):
            for provider in providers:
                for mode in modes:
                    results.append(run_once(provider, mode))
                    print(json.dumps(results[-1]), flush=True)
    finally:
        sink.terminate()
        drop_scratch_dbs()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
