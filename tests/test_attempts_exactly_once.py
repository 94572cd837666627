"""Exactly once wherever a batch can die: claims belong to a task attempt, not to a run.

A real Dask cluster (scheduler and workers as separate processes started with the project's
preload, shop and state DB on PostgreSQL) sends `sale` through the local SendGrid server, which
answers each request only seconds after storing it. One worker is SIGKILLed while its request is in
flight (the mail may be stored, its answer never arrives), another right after a request was
answered (between two sends). Dask re-runs the lost batches inside the same flow run: those attempts
wait for the dead attempt's lease, take over what it never requested, and settle what it did by
proof (the Activity API, answering as SendGrid does: by address, no custom args). Reruns follow
until no ledger row is open. Counted at the server: nobody twice, nobody missing, and the run
reports' sent counts add up to the server's.

Also: the process-pool runner with a worker process killed mid-request, and a Prefect task retry
after an exception in the middle of a send.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config.settings import Settings, get_settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.devtools.sendgrid_sink import RunningSink, running_sink
from shopmail.devtools.sink_faults import Faults
from shopmail.state import ledger, state_db
from shopmail.state.schema import run_summaries, send_ledger
from tests.prefect_server import free_port
from tests.process_kill import descendants, kill, pid_of_client_port
from tests.test_shop_databases import SERVERS, _scratch_database

pytestmark = [pytest.mark.integration, pytest.mark.flow]
AS_OF = date(2026, 11, 23)
ROOT = Path(__file__).resolve().parent.parent
LEASE_S = 15
GRACE_MIN = 0.25  # 15 s: doubt settles by proof or, after this, one resend


@pytest.fixture
def postgres_sendgrid(settings: Settings, monkeypatch) -> Iterator[tuple[Settings, RunningSink]]:
    """Shop and state DB on PostgreSQL, SendGrid = the local server answering 1.5 s after storing."""
    scratch = []
    for var in ("SHOPMAIL_SHOP_DB_URL", "SHOPMAIL_STATE_DB_URL"):
        gen = _scratch_database(SERVERS["postgresql"])
        monkeypatch.setenv(var, next(gen))
        scratch.append(gen)
    try:
        with running_sink() as sink:
            sink.store.set_faults(Faults(slow_ms=700, answer_delay_ms=1500))
            env = {
                "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
                "SHOPMAIL_SENDGRID_HOST": sink.url,
                "SHOPMAIL_SENDGRID_API_KEY": "SG.test-key-not-a-secret",
                "SHOPMAIL_SENDGRID_BACKOFF_S": "0.05",
                "SHOPMAIL_SENDGRID_CONCURRENCY": "1",
                "SHOPMAIL_SEND_BATCH_SIZE": "60",
                "SHOPMAIL_CLAIM_LEASE_SECONDS": str(LEASE_S),
                "SHOPMAIL_DOUBT_GRACE_MINUTES": str(GRACE_MIN),
            }
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            get_settings.cache_clear()
            current = get_settings()
            generate_demo_shop(current.shop_url_resolved, customers=2500, seed=5, today=AS_OF)
            yield current, sink
    finally:
        for gen in scratch:
            next(gen, None)


def _sent_per_customer(sink: RunningSink) -> Counter:
    return Counter(
        int(p["custom_args"]["customer_id"])
        for m in sink.store.messages
        for p in m.payload["personalizations"]
    )


def _open_rows(settings: Settings) -> int:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        return conn.execute(
            select(func.count()).where(send_ledger.c.status.in_(("pending", "failed", "in_doubt")))
        ).scalar_one()


def _sent_rows(settings: Settings) -> set[int]:
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        return {
            r.customer_id
            for r in conn.execute(select(send_ledger.c.customer_id).where(send_ledger.c.status == "sent"))
        }


def _eligible(settings: Settings) -> set[int]:
    from shopmail.campaigns import get_campaign
    from shopmail.db import get_engine
    from shopmail.run.pipeline import select_recipients
    from shopmail.shop.extract import extract

    campaign = get_campaign("sale")
    frames = extract(get_engine(settings.shop_url_resolved), campaign.datasets, AS_OF, settings.tz, 365)
    state = state_db.upgrade(settings.state_url_resolved)
    return set(select_recipients(campaign, frames, AS_OF, settings, state, set()).eligible["customer_id"])


def _run_until_closed(run: Callable[[], object], settings: Settings, limit_s: float = 240) -> list:
    """Rerun until no ledger row is open (each rerun after the doubt grace at most)."""
    reports = []
    deadline = time.monotonic() + limit_s
    while _open_rows(settings) and time.monotonic() < deadline:
        time.sleep(GRACE_MIN * 60 / 2)
        reports.append(run())
    assert _open_rows(settings) == 0, "rows still open after reruns"
    return reports


def _kill_mid_request(sink: RunningSink, pids: Callable[[], list[int]], timeout_s: float = 90) -> int:
    """SIGKILL a process whose request is in flight at the server right now; its pid."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for port in list(sink.store.ports_in_flight):
            pid = pid_of_client_port(port, pids())
            if pid is not None and port in sink.store.ports_in_flight:
                kill(pid)
                return pid
        time.sleep(0.05)
    raise AssertionError("no request in flight to kill")


def _kill_between_sends(sink: RunningSink, pids: Callable[[], list[int]], timeout_s: float = 90) -> int:
    """SIGKILL a process the moment its request was answered (before its next one)."""
    seen = len(sink.store.answered_ports)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answered = list(sink.store.answered_ports)[seen:]
        for port in answered:
            if port in sink.store.ports_in_flight:
                continue
            pid = pid_of_client_port(port, pids())
            if pid is not None:
                kill(pid)
                return pid
        seen += len(answered)
        time.sleep(0.01)
    raise AssertionError("no answered request to kill after")


@contextmanager
def dask_cluster(env: dict[str, str], workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """`dask scheduler` and `dask worker`s as separate processes, each started with the project's
    preload (the commands of docs/operating/scale-out.md)."""
    port = free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    common = ["--preload", "shopmail.dask_preload", "--no-dashboard"]
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), *common],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    address = f"tcp://127.0.0.1:{port}"
    for _ in range(workers):
        procs.append(
            subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", *common],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    try:
        from distributed import Client

        with Client(address, timeout=180) as client:
            client.wait_for_workers(workers, timeout=180)
        yield address, procs
    finally:
        for proc in procs:
            for pid in [*descendants(proc.pid), proc.pid]:
                with suppress(ProcessLookupError):
                    os.kill(pid, 9)
            proc.wait(30)


def _reports_add_up(reports: list, sink: RunningSink, eligible: set[int], settings: Settings) -> None:
    per_customer = _sent_per_customer(sink)
    assert max(per_customer.values()) == 1, "a customer got the mail twice"
    assert set(per_customer) == eligible, "a customer's mail was lost"
    assert _sent_rows(settings) == set(per_customer)
    assert sum(r.counts()["sent"] for r in reports) == sum(per_customer.values())


def test_dask_workers_killed_mid_request_and_between_sends_send_each_mail_once(
    prefect_harness, postgres_sendgrid, monkeypatch
) -> None:
    from flows.campaign import configured_campaign_flow

    settings, sink = postgres_sendgrid
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    eligible = _eligible(settings)
    with dask_cluster(env) as (address, procs):
        monkeypatch.setenv("SHOPMAIL_TASK_RUNNER", "dask")
        monkeypatch.setenv("SHOPMAIL_DASK_ADDRESS", address)
        get_settings.cache_clear()
        run = configured_campaign_flow()
        workers = lambda: [pid for proc in procs[1:] for pid in descendants(proc.pid)]  # noqa: E731
        reports: list = []
        flow = threading.Thread(
            target=lambda: reports.append(run(campaign="sale", as_of=AS_OF, preapproved=True))
        )
        flow.start()
        mid = _kill_mid_request(sink, workers)
        between = _kill_between_sends(sink, lambda: [p for p in workers() if p != mid])
        flow.join(600)
        assert not flow.is_alive() and reports, "the flow run did not finish"
        first = reports[0]
        # the re-run attempts waited for the dead attempts' leases and took over inside this run
        assert first.outcomes.get("already_sent", 0) == 0
        reports += _run_until_closed(lambda: run(campaign="sale", as_of=AS_OF, preapproved=True), settings)
    print("killed mid-request:", mid, "between sends:", between, "first run:", dict(first.outcomes))
    _reports_add_up(reports, sink, eligible, settings)


def test_a_cold_cluster_on_a_busy_machine_sends_every_batch(
    prefect_harness, postgres_sendgrid, monkeypatch
) -> None:
    """Scheduler and workers just started, two CPU hogs beside them: every batch succeeds."""
    from flows.campaign import configured_campaign_flow

    settings, sink = postgres_sendgrid
    sink.store.set_faults(Faults())
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) for _ in range(2)
    ]
    try:
        with dask_cluster({**os.environ, "PYTHONPATH": str(ROOT)}) as (address, _procs):
            monkeypatch.setenv("SHOPMAIL_TASK_RUNNER", "dask")
            monkeypatch.setenv("SHOPMAIL_DASK_ADDRESS", address)
            get_settings.cache_clear()
            report = configured_campaign_flow()(campaign="sale", as_of=AS_OF, preapproved=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert not report.errors, report.errors
    assert report.counts()["sent"] == len(_sent_per_customer(sink)) > 500
    assert _open_rows(settings) == 0


def test_a_process_pool_worker_killed_mid_request_sends_each_mail_once(
    prefect_harness, postgres_sendgrid
) -> None:
    """SHOPMAIL_TASK_RUNNER=processes, `shopmail run` as a user runs it: a worker process is killed
    while its request is in flight; `shopmail run --wait` reruns finish the rest exactly once."""
    from prefect.settings import get_current_settings

    settings, sink = postgres_sendgrid
    eligible = _eligible(settings)
    env = {
        **os.environ,
        "SHOPMAIL_TASK_RUNNER": "processes",
        "SHOPMAIL_WORKERS": "2",
        "PREFECT_API_URL": str(get_current_settings().api.url),
    }
    cli = [sys.executable, "-m", "shopmail.cli", "run", "sale", "--as-of", str(AS_OF), "--yes"]
    first = subprocess.Popen(
        cli, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed = _kill_mid_request(sink, lambda: descendants(first.pid))
    output = first.communicate(timeout=600)[0]
    print("killed worker", killed, "first run exit", first.returncode, output[-1500:])
    for _ in range(6):
        if not _open_rows(settings):
            break
        time.sleep(GRACE_MIN * 60 / 2)
        again = subprocess.run(
            [*cli, "--wait"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert again.returncode in (0, 3), again.stdout[-2000:] + again.stderr[-2000:]
    assert _open_rows(settings) == 0
    per_customer = _sent_per_customer(sink)
    assert max(per_customer.values()) == 1
    assert set(per_customer) == eligible
    state = state_db.upgrade(settings.state_url_resolved)
    with state.connect() as conn:
        sent_by_runs = conn.execute(select(func.sum(run_summaries.c.sent))).scalar_one()
    assert sent_by_runs == sum(per_customer.values())  # what the runs reported is what was sent


def test_a_task_retry_after_an_exception_mid_send_sends_each_mail_once(
    prefect_harness, postgres_sendgrid, monkeypatch
) -> None:
    """The state DB fails right after a request was accepted (the outcome cannot be recorded): the
    batch raises, Prefect retries it as a new attempt, which proves the accepted mails by the Activity
    API instead of sending them again."""
    from flows.campaign import configured_campaign_flow

    settings, sink = postgres_sendgrid
    sink.store.set_faults(Faults())
    eligible = _eligible(settings)
    real_mark = ledger.mark
    calls = {"sent": 0, "failing": 0}
    target: list[str] = []

    def flaky_mark(engine, results, run_id=None, **kwargs):
        """The third accepted request's outcome cannot be recorded: 6 failures in a row (more than
        the send task's own DB retries), then the state DB is back."""
        keys = {r.message_key for r in results}
        if not target and any(str(r.status) == "sent" for r in results):
            calls["sent"] += 1
            if calls["sent"] == 3:
                target.append(results[0].message_key)
        if target and target[0] in keys and calls["failing"] < 6:
            calls["failing"] += 1
            raise ConnectionError("state DB went away")
        return real_mark(engine, results, run_id, **kwargs)

    monkeypatch.setattr(ledger, "mark", flaky_mark)
    run = configured_campaign_flow()
    report = run(campaign="sale", as_of=AS_OF, preapproved=True)
    assert calls["failing"] == 6
    reports = [
        report,
        *_run_until_closed(lambda: run(campaign="sale", as_of=AS_OF, preapproved=True), settings),
    ]
    _reports_add_up(reports, sink, eligible, settings)
    assert report.outcomes.get("sent_before_crash", 0) >= 1 or any(
        r.outcomes.get("sent_before_crash", 0) for r in reports
    )
