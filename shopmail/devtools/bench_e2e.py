"""End-to-end stages of `make bench`: the real campaign flow and the command line, as a user meets them.

- `end_to_end`: the real `campaign` flow run by `shopmail run` (threads runner) against a real Prefect
  server (the local one `shopmail server` manages), shop and state DB on PostgreSQL, the local
  SendGrid server in its own process. Reported: mails/s of the send phase (first to last request the
  server accepted), the whole run from the flow's start (extract) to the last accepted mail, and the
  Prefect task runs it made.
- `cli_stage`: wall time of `shopmail campaigns` and of `shopmail run welcome --dry-run` on the demo
  shop with the local Prefect server up (best of N), and of the first run that starts the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path

import httpx
from sqlalchemy import create_engine, inspect, text

from config.settings import PROJECT_ROOT
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run import local_prefect

PG = os.environ.get("SHOPMAIL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
API_KEY = "SG.bench"
# a production profile: the SendGrid provider is a real send, and a real send refuses demo values
PROFILE = {
    "SHOPMAIL_UNSUBSCRIBE_SECRET": "bench-unsubscribe-secret",
    "SHOPMAIL_COUPON_SECRET": "bench-coupon-secret",
    "SHOPMAIL_SENDER_EMAIL": "news@bench-shop.test",
    "SHOPMAIL_SENDER_NAME": "Bench Shop",
    "SHOPMAIL_SHOP_NAME": "Bench Shop",
    "SHOPMAIL_SHOP_NAME_GENITIVE": "Bench Shop",
    "SHOPMAIL_SHOP_NAME_PREPOSITIONAL": "Bench Shop",
    "SHOPMAIL_SHOP_URL": "https://bench-shop.test",
    "SHOPMAIL_SUPPORT_EMAIL": "help@bench-shop.test",
    "SHOPMAIL_SUPPORT_PHONE": "+7 495 000-11-22",
    "SHOPMAIL_SOCIAL_LINKS": "{}",
    "SHOPMAIL_LEGAL_FOOTER": "Bench Shop LLC, 1 Test Street",
    "SHOPMAIL_UNSUBSCRIBE_URL": "https://mail.bench-shop.test/unsubscribe",
    "SHOPMAIL_UNSUBSCRIBE_MAILBOX": "unsubscribe@bench-shop.test",
    "SHOPMAIL_TRACKING_URL": "",
    "SHOPMAIL_LINK_HOSTS": "shop.example",
}


@dataclass(frozen=True)
class EndToEnd:
    mails: int
    send_s: float
    run_s: float
    requests: int
    task_runs: int

    @property
    def rate(self) -> float:
        return self.mails / self.send_s if self.send_s else 0.0


def pg_database(name: str) -> str:
    return create_engine(PG).url.set(database=name).render_as_string(hide_password=False)


def bench_shop_on_postgres(customers: int, today: date) -> str:
    """The bench's demo shop on PostgreSQL (generated once, kept as `shopmail_bench_shop_<n>`)."""
    name = f"shopmail_bench_shop_{customers}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = pg_database(name)
    engine = create_engine(url)
    ready = inspect(engine).has_table("shopmail_demo_shop")
    engine.dispose()
    if not ready:
        print(f"  generating the {customers:,}-customer shop on PostgreSQL (once)", flush=True)
        generate_demo_shop(url, customers=customers, seed=1, today=today)
    return url


def scratch_state() -> tuple[str, str]:
    name = f"shopmail_bench_state_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return pg_database(name), name


def drop_database(name: str) -> None:
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def _stats(url: str) -> dict:
    return httpx.get(f"{url}/sink/stats", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30).json()


def _task_runs(api_url: str, flow_run_id: str) -> int:
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    response = httpx.post(f"{api_url}/task_runs/count", json=body, timeout=30)
    response.raise_for_status()
    return int(response.json())


def end_to_end(customers: int, campaign: str, as_of: date, sink_url: str, data_dir: Path) -> EndToEnd:
    """`shopmail run <campaign> --yes` as a user runs it, against the local Prefect server."""
    shop = bench_shop_on_postgres(customers, as_of)
    state, state_name = scratch_state()
    server = local_prefect.ensure(data_dir)
    env = {
        **os.environ,
        **PROFILE,
        "PREFECT_API_URL": server.url,
        "SHOPMAIL_DATA_DIR": str(data_dir),
        "SHOPMAIL_SHOP_DB_URL": shop,
        "SHOPMAIL_STATE_DB_URL": state,
        "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
        "SHOPMAIL_SENDGRID_HOST": sink_url,
        "SHOPMAIL_SENDGRID_API_KEY": API_KEY,
        "SHOPMAIL_TASK_RUNNER": "threads",
    }
    before = _stats(sink_url)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "shopmail.cli", "run", campaign, "--as-of", as_of.isoformat(), "--yes"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the end-to-end run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        after = _stats(sink_url)
        engine = create_engine(state)
        with engine.connect() as conn:
            run_id, started = conn.execute(
                text("SELECT run_id, started_at FROM run_summaries WHERE campaign = :c"), {"c": campaign}
            ).one()
        engine.dispose()
    finally:
        drop_database(state_name)
    mails = after["personalizations"] - before["personalizations"]
    first, last = after["first_received_at"], after["last_received_at"]
    if before["last_received_at"]:
        first = before["last_received_at"]  # the sink served the bench before: count this run's part
    started_unix = started.replace(tzinfo=UTC).timestamp()
    return EndToEnd(
        mails=mails,
        send_s=max(last - first, 1e-9),
        run_s=last - started_unix,
        requests=after["requests"] - before["requests"],
        task_runs=_task_runs(server.url, run_id),
    )


def _wall(args: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[2:])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def cli_stage(data_dir: Path, repeat: int = 5) -> dict[str, float]:
    """Wall times of the commands a user types most, on the 5,000-customer demo shop: the first run
    (starts the local Prefect server), then best of `repeat` with the server up."""
    data_dir.mkdir(parents=True, exist_ok=True)
    local_prefect.stop(data_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["SHOPMAIL_DATA_DIR"] = str(data_dir)
    cli = [sys.executable, "-m", "shopmail.cli"]
    if not (data_dir / "demo_shop.sqlite").exists():
        subprocess.run([*cli, "demo-data"], env=env, cwd=PROJECT_ROOT, capture_output=True, check=True)
    dry_run = [*cli, "run", "welcome", "--dry-run"]
    try:
        first = _wall(dry_run, env)
        return {
            "shopmail campaigns": min(_wall([*cli, "campaigns"], env) for _ in range(repeat)),
            "shopmail run welcome --dry-run (server up)": min(_wall(dry_run, env) for _ in range(repeat)),
            "first shopmail run (starts the server)": first,
        }
    finally:
        local_prefect.stop(data_dir)
