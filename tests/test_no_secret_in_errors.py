"""No coupon code and no DB password in any error, log, artifact, task state or stored summary.

A realistic failure: the `birthday` campaign (it carries a personal coupon) runs against a
PostgreSQL shop whose Shopmail role may read everything but not INSERT into `coupons`, and whose
password holds an '@' (and a '/' and a ':'), URL-encoded in SHOPMAIL_SHOP_DB_URL. Issuing the
coupons fails, so nothing is sent; then every output is scanned for the codes the mails would have
carried and for the password: the CLI's stdout/stderr, the Prefect logs, artifacts, flow and task
run states (every retry), the run summaries, the send ledger and every other state DB table.

`issued_coupons` is the one place the codes belong (recorded before the shop insert, so a rerun
mails the same codes); it is checked to hold them, and left out of the scan.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import MetaData, create_engine, select, text

from config.settings import Settings, get_settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.shop import schema as shop_schema
from shopmail.state.coupons import coupon_code
from shopmail.state.schema import issued_coupons, send_ledger
from tests.test_shop_databases import SERVERS, _scratch_database

pytestmark = [pytest.mark.flow, pytest.mark.integration]
AS_OF = date(2026, 11, 23)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LockedShop:
    """A PostgreSQL shop the Shopmail role cannot insert coupons into."""

    settings: Settings
    shop_url: str  # as the role, password URL-encoded
    state_url: str
    password: str

    def password_forms(self) -> set[str]:
        return {self.password, quote(self.password, safe=""), self.password.split("@")[1]}


@pytest.fixture
def locked_shop(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[LockedShop]:
    admin_url = SERVERS["postgresql"]
    shop_gen, state_gen = _scratch_database(admin_url), _scratch_database(admin_url)
    shop_admin_url, state_admin_url = next(shop_gen), next(state_gen)
    role = f"shopmail_limited_{uuid.uuid4().hex[:8]}"
    password = f"Pw@{uuid.uuid4().hex[:6]}/s3cr:et"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        generate_demo_shop(shop_admin_url, customers=2500, seed=17, today=AS_OF)
        shop_db, state_db_name = shop_admin_url.rsplit("/", 1)[1], state_admin_url.rsplit("/", 1)[1]
        with admin.connect() as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))  # trust auth: unchecked
            conn.execute(text(f"ALTER DATABASE {state_db_name} OWNER TO {role}"))
        shop_admin = create_engine(shop_admin_url, isolation_level="AUTOCOMMIT")
        with shop_admin.connect() as conn:  # read everything, write nothing (no INSERT on coupons)
            conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        shop_admin.dispose()
        as_role = f"postgresql+psycopg://{role}:{quote(password, safe='')}@127.0.0.1:5432"
        shop_url, state_url = f"{as_role}/{shop_db}", f"{as_role}/{state_db_name}"
        monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", shop_url)
        monkeypatch.setenv("SHOPMAIL_STATE_DB_URL", state_url)
        get_settings.cache_clear()
        yield LockedShop(get_settings(), shop_url, state_url, password)
    finally:
        for url in (shop_url, state_url) if "shop_url" in locals() else ():
            get_engine(url).dispose()
        get_engine.cache_clear()
        for gen in (shop_gen, state_gen):
            next(gen, None)
        with admin.connect() as conn:
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _state_tables(state_url: str) -> dict[str, list[str]]:
    """Every row of every state DB table except `issued_coupons`, as text."""
    engine = get_engine(state_url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {
            name: [repr(tuple(row)) for row in conn.execute(select(table))]
            for name, table in meta.tables.items()
            if name != issued_coupons.name
        }


def _expected_codes(locked: LockedShop) -> set[str]:
    """The codes the birthday mails carry: HMAC of each claimed mail's key (and as recorded)."""
    secret = locked.settings.coupon_secret.get_secret_value()
    state = get_engine(locked.state_url)
    with state.connect() as conn:
        keys = conn.execute(select(send_ledger.c.message_key).where(send_ledger.c.campaign == "birthday"))
        from_ledger = {coupon_code(secret, key, "BDAY") for key in keys.scalars()}
        recorded = set(conn.execute(select(issued_coupons.c.code)).scalars())
    assert from_ledger and recorded == from_ledger, "the mails were claimed and their coupons recorded"
    return from_ledger


def _prefect_outputs(run_ids: list[str]) -> dict[str, str]:
    """Everything the Prefect server keeps about these flow runs, as JSON text: the runs and their
    state history, every task run and its state history (retries included), logs, artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    ids = [uuid.UUID(r) for r in run_ids]

    async def collect() -> dict[str, str]:
        async with get_client() as client:
            runs = FlowRunFilter(id=FlowRunFilterId(any_=ids))
            found: dict[str, list[str]] = {"flow_runs": [], "task_runs": [], "states": []}
            for run_id in ids:
                found["flow_runs"].append((await client.read_flow_run(run_id)).model_dump_json())
                found["states"] += [s.model_dump_json() for s in await client.read_flow_run_states(run_id)]
            for task_run in await client.read_task_runs(flow_run_filter=runs):
                found["task_runs"].append(task_run.model_dump_json())
                states = await client.read_task_run_states(task_run.id)
                found["states"] += [s.model_dump_json() for s in states]
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
            artifacts = await client.read_artifacts(flow_run_filter=runs)
            found["logs"] = [log.model_dump_json() for log in logs]
            found["artifacts"] = [a.model_dump_json() for a in artifacts]
            return {name: "\n".join(items) for name, items in found.items()}

    return asyncio.run(collect())


def _run_ids(locked: LockedShop) -> list[str]:
    with get_engine(locked.state_url).connect() as conn:
        return list(
            conn.execute(text("SELECT run_id FROM run_summaries WHERE campaign = 'birthday'")).scalars()
        )


def _assert_nothing_leaks(outputs: dict[str, str], locked: LockedShop) -> None:
    codes = _expected_codes(locked)
    outputs = {**outputs, **{f"state:{k}": "\n".join(v) for k, v in _state_tables(locked.state_url).items()}}
    leaks = [
        f"{where}: {'coupon code' if secret in codes else 'password'} {secret[:4]}…"
        for where, output in outputs.items()
        for secret in (*codes, *locked.password_forms())
        if secret in output
    ]
    assert not leaks, "\n".join(sorted(set(leaks)))
    # the failure itself is reported everywhere it should be, only without the secrets
    assert "permission denied for table coupons" in outputs["state:send_ledger"]
    assert "permission denied for table coupons" in outputs["logs"]
    assert "CouponIssueFailed" in outputs["states"] and "BDAY-…" in outputs["artifacts"] + outputs["logs"]


def _nothing_sent(locked: LockedShop) -> None:
    with get_engine(locked.shop_url).connect() as conn:
        codes = conn.execute(
            select(shop_schema.coupons.c.code).where(shop_schema.coupons.c.code.like("BDAY-%"))
        )
        assert codes.all() == []
    with get_engine(locked.state_url).connect() as conn:
        statuses = set(conn.execute(select(send_ledger.c.status)).scalars())
    assert statuses == {"failed"}
    outbox = locked.settings.outbox_path
    assert not outbox.exists() or list(outbox.glob("*.eml")) == []


def test_cli_run_with_a_failing_coupon_insert_leaks_no_code_and_no_password(
    prefect_harness, locked_shop: LockedShop
) -> None:
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    done = subprocess.run(
        [sys.executable, "-m", "shopmail.cli", "run", "birthday", "--as-of", AS_OF.isoformat(), "--yes"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    _nothing_sent(locked_shop)
    outputs = {"stdout": done.stdout, "stderr": done.stderr, **_prefect_outputs(_run_ids(locked_shop))}
    assert "batches failed" in done.stdout + done.stderr
    _assert_nothing_leaks(outputs, locked_shop)


def test_flow_run_with_a_failing_coupon_insert_leaks_no_code_and_no_password(
    prefect_harness,
    locked_shop: LockedShop,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.logging.handlers import APILogWorker

    import flows.steps
    from flows.campaign import campaign_flow
    from tasks.send import send_batch

    monkeypatch.setattr(flows.steps, "send_batch", send_batch.with_options(retry_delay_seconds=0))
    with pytest.raises(RuntimeError, match="batches failed") as caught:
        campaign_flow(campaign="birthday", as_of=AS_OF, preapproved=True)
    APILogWorker.drain_all(timeout=10)  # the run's logs reach the server before we read them
    _nothing_sent(locked_shop)
    snapshots = locked_shop.settings.data_dir / "snapshots"  # customer ids and values: owner only
    assert stat.S_IMODE(snapshots.stat().st_mode) == 0o700
    raised = "".join(traceback.format_exception(caught.value))
    captured = capfd.readouterr()
    outputs = {
        "raised": raised,
        "console": captured.out + captured.err,
        "python logs": caplog.text,
        **_prefect_outputs(_run_ids(locked_shop)),
    }
    _assert_nothing_leaks(outputs, locked_shop)
