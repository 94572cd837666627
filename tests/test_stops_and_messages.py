"""Stops that say what happened (issue 29): a locked shop is waited for boundedly with warnings, a shop
file deleted mid-run stops the run, coupons the shop lost are put back, the state DB's write-ahead log
stays small, a read-only or full disk is one sentence naming the path and the setting, and no user
error ends as "Unexpected error" or under a Prefect traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

import segments.rules
import shopmail.db
import shopmail.shop.lock_wait
from config.settings import Settings, get_settings
from shopmail.cli import app
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run.errors import CONFIG_EXIT, explain
from shopmail.shop.data_checks import run_gate
from shopmail.shop.extract import day_end_utc, extract, missing_datasets
from shopmail.shop.lock_wait import ShopDatabaseLocked, wait_while_locked
from shopmail.state import state_db
from shopmail.state.schema import send_ledger
from tests.test_shop_databases import SERVERS, _scratch_database

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 11, 23)
MSK = ZoneInfo("Europe/Moscow")


@pytest.fixture
def demo_shop(settings: Settings) -> Settings:
    generate_demo_shop(settings.shop_url_resolved, customers=800, seed=7, today=AS_OF)
    return settings


def _cli_process(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`shopmail ARGS` in its own process against the session's Prefect test server."""
    from prefect.settings import get_current_settings

    environment = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url), **env}
    return subprocess.run(
        [sys.executable, "-m", "shopmail.cli", *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ledger_statuses(settings: Settings, campaign: str) -> list[str]:
    with state_db.upgrade(settings.state_url_resolved).connect() as conn:
        return list(
            conn.execute(select(send_ledger.c.status).where(send_ledger.c.campaign == campaign)).scalars()
        )


# --- messages -------------------------------------------------------------------------------------


def test_a_segment_typo_is_a_configuration_error_before_any_work(demo_shop: Settings) -> None:
    result = CliRunner().invoke(app, ["run", "new_arrivals", "--dry-run", "--segment", "vipp"])
    assert result.exit_code == CONFIG_EXIT, result.output
    assert "Segment configuration: unknown segment 'vipp': choose one of all, " in result.output
    assert "Unexpected error" not in result.output and "Prefect" not in result.output  # no server started


@pytest.fixture
def broken_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """config/segments.toml with one good segment, one broken and one built on the broken one."""
    from flows.forms import segment_titles

    path = tmp_path / "segments.toml"
    path.write_text(
        '[segments.vip]\ntitle = "VIP"\nrule = { field = "total_spend", gte = 150000 }\n'
        '[segments.typo]\nrule = { field = "total_spent", gte = 1 }\n'
        '[segments.on_typo]\nrule = { all = [{ segment = "typo" }, { field = "age", gt = 18 }] }\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(segments.rules, "SEGMENTS_FILE", path)
    segment_titles.cache_clear()
    yield path
    segment_titles.cache_clear()


@pytest.mark.flow
def test_a_broken_segment_disables_only_itself_everywhere(
    prefect_harness, demo_shop: Settings, broken_segments: Path
) -> None:
    """It used to stop every campaign, with or without a segment, at the run form (exit 2)."""
    from flows.campaign import campaign_flow
    from flows.forms import segment_dropdown, segment_id, segment_titles

    assert list(segment_titles()) == ["all", "vip"]
    assert segment_dropdown().json_schema["enum"][1] == "VIP"
    assert segment_id("VIP") == "vip"
    report = campaign_flow(campaign="wakeup", as_of=AS_OF, dry_run=True)
    assert report.would_send() > 0
    refused = CliRunner().invoke(app, ["run", "new_arrivals", "--dry-run", "--segment", "on_typo"])
    assert refused.exit_code == CONFIG_EXIT, refused.output
    assert "segment 'on_typo' is disabled:" in refused.output and "refers to segment 'typo'" in refused.output


@pytest.mark.flow
def test_an_approval_nobody_answers_is_a_sentence_not_an_unexpected_error(prefect_harness, demo_shop) -> None:
    done = _cli_process(
        "run",
        "new_arrivals",
        "--as-of",
        AS_OF.isoformat(),
        SHOPMAIL_APPROVAL_TIMEOUT_S="10",
        SHOPMAIL_APPROVAL_MAX_AUDIENCE="1",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "Send not approved, nothing sent: the run waited for approval in the Prefect UI and nobody"
        in done.stderr
    )
    assert "Unexpected error" not in done.stderr and "Traceback" not in done.stderr
    assert _ledger_statuses(demo_shop, "new_arrivals") == []
    assert state_db.recent_runs(state_db.upgrade(demo_shop.state_url_resolved))[0]["status"] == "rejected"


def test_a_rejected_approval_and_a_cancelled_run_are_explained() -> None:
    from prefect.exceptions import CancelledRun, FailedRun

    rejected = explain(CancelledRun("Send not approved, nothing sent (3x the median; rejected: too many)"))
    assert rejected is not None and "rejected: too many" in rejected.message and "--yes" in rejected.message
    cancelled = explain(CancelledRun("Cancelled by the operator"))
    assert cancelled is not None and cancelled.message.startswith(
        "The run was cancelled: Cancelled by the op"
    )
    assert explain(FailedRun("The flow was cancelled and never resumed.")) is not None
    assert explain(FailedRun("Flow run encountered an exception: KeyError: 'x'")) is None


@pytest.mark.flow
def test_a_user_error_has_no_prefect_traceback_above_it_unless_debug(prefect_harness, demo_shop) -> None:
    with get_engine(demo_shop.shop_url_resolved).begin() as conn:
        conn.execute(text("DELETE FROM customers"))
    done = _cli_process("run", "wakeup", "--as-of", AS_OF.isoformat())
    assert done.returncode == 1, done.stderr
    assert "Encountered exception during execution: DataCheckFailed" in done.stderr  # the run's own line
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("Data checks failed, nothing sent: the customers table")
    )
    debug = _cli_process("--debug", "run", "wakeup", "--as-of", AS_OF.isoformat())
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def _registered_in_2030(engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE customers SET registered_at = :t WHERE id % 3 = 0"), {"t": datetime(2030, 1, 1, 9)}
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def any_shop_url(request: pytest.FixtureRequest, demo_shop: Settings) -> Iterator[str]:
    if request.param == "sqlite":
        yield demo_shop.shop_url_resolved
        return
    gen = _scratch_database(SERVERS["postgresql"])
    url = next(gen)
    generate_demo_shop(url, customers=800, seed=7, today=AS_OF)
    try:
        yield url
    finally:
        next(gen, None)


def test_the_stop_reason_names_dates_in_the_future_before_the_references_they_broke(
    any_shop_url: str,
) -> None:
    engine = get_engine(any_shop_url)
    _registered_in_2030(engine)
    frames = extract(engine, ["customers", "orders"], AS_OF, MSK, 365)
    gate = run_gate(frames, AS_OF, day_end_utc(AS_OF, MSK))
    reason = gate.failure_text()
    assert reason.startswith(
        "customers.registered_at: 266 of 800 rows lie in the future (newest 2030-01-01 09:00"
    ), reason
    assert "orders.customer_id: references_customers (" in reason and "left out as in the future" in reason
    assert reason.index("registered_at") < reason.index("references_customers")


@pytest.mark.flow
def test_a_run_stopped_by_future_dates_says_so_first(prefect_harness, demo_shop: Settings) -> None:
    from flows.campaign import campaign_flow
    from tasks.validate import DataCheckFailed

    _registered_in_2030(get_engine(demo_shop.shop_url_resolved))
    with pytest.raises(
        DataCheckFailed, match=r"^Data checks failed, nothing sent: customers\.registered_at: 266"
    ):
        campaign_flow(campaign="wakeup", as_of=AS_OF)
    assert _ledger_statuses(demo_shop, "wakeup") == []


@pytest.mark.flow
def test_a_shop_view_without_the_language_column_is_a_warning(
    prefect_harness, demo_shop: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.campaign import campaign_flow

    with get_engine(demo_shop.shop_url_resolved).begin() as conn:
        conn.execute(text("ALTER TABLE customers RENAME TO shop_customers"))
        columns = (
            "id, email, first_name, last_name, gender, birth_date, city, registered_at, marketing_consent"
        )
        conn.execute(text(f"CREATE VIEW customers AS SELECT {columns}, discount_card FROM shop_customers"))
    report = campaign_flow(campaign="wakeup", as_of=AS_OF, dry_run=True)
    assert report.would_send() > 0 and report.sample is not None
    assert "Отписаться от рассылки" in report.sample.text.replace("\xa0", " ")  # the default language
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    said = (
        "customers.language is not in the shop's table or view: every row reads as NULL (the default language"
    )
    assert any(said in w for w in warned), warned
    row = "| customers | language | column missing from the view | value treated as missing | "
    assert row in report.checks_markdown


# --- the shop database: locks, a file deleted mid-run, coupons the shop lost ----------------------------


@pytest.fixture
def quick_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock waits in seconds instead of minutes (the logic is the same)."""
    monkeypatch.setattr(shopmail.db, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(shopmail.shop.lock_wait, "PAUSE_S", 0.5)
    monkeypatch.setattr(shopmail.shop.lock_wait, "LOCK_TIMEOUT_S", 1)
    monkeypatch.setenv("SHOPMAIL_SHOP_LOCK_WAIT_S", "3")
    get_settings.cache_clear()
    get_engine.cache_clear()


@pytest.mark.flow
def test_a_locked_sqlite_shop_is_waited_for_boundedly_with_warnings(
    prefect_harness, demo_shop: Settings, quick_locks: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A backup or the shop itself holds the file locked: warnings say what and how long, then the run
    stops with one sentence (it used to retry for more than six minutes with INFO lines)."""
    from flows.campaign import campaign_flow

    holder = sqlite3.connect(
        str(Path(demo_shop.shop_url_resolved.removeprefix("sqlite:///"))), isolation_level=None
    )
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(ShopDatabaseLocked) as caught:
            campaign_flow(campaign="wakeup", as_of=AS_OF)
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert took < 20
    warned = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "locked" in r.getMessage()
    ]
    assert warned and all("is locked by another program: waited" in w for w in warned), warned
    assert "SHOPMAIL_SHOP_LOCK_WAIT_S" in warned[0] and "demo_shop.sqlite" in warned[0]
    said = explain(caught.value).message
    assert "stayed locked by another program: waited" in said and "(SHOPMAIL_SHOP_LOCK_WAIT_S=3)" in said
    assert _ledger_statuses(demo_shop, "wakeup") == []
    assert campaign_flow(campaign="wakeup", as_of=AS_OF, dry_run=True).would_send() > 0  # free again: it runs


@pytest.fixture(params=list(SERVERS))
def server_shop(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    gen = _scratch_database(SERVERS[request.param])
    url = next(gen)
    generate_demo_shop(url, customers=300, seed=5, today=AS_OF)
    try:
        yield url
    finally:
        next(gen, None)


@pytest.mark.integration
def test_a_table_locked_on_postgresql_or_mariadb_is_a_bounded_wait(
    server_shop: str, quick_locks: None
) -> None:
    """Without a lock timeout a read behind `ALTER TABLE` (PostgreSQL) or `LOCK TABLES ... WRITE`
    (MariaDB) waits for ever; each read now gives up after LOCK_TIMEOUT_S and the run after the limit."""
    engine = get_engine(server_shop)
    holder = get_engine(server_shop).connect()
    if holder.dialect.name == "postgresql":
        holder.execute(text("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"))
    else:
        holder.execute(text("LOCK TABLES customers WRITE"))
    warnings: list[str] = []
    try:
        started = time.monotonic()
        with pytest.raises(ShopDatabaseLocked, match="stayed locked by another program"):
            wait_while_locked(
                lambda: extract(engine, ["customers"], AS_OF, MSK, 30),
                limit_s=3,
                warn=lambda message, *args: warnings.append(message % args),
                what="The shop database",
            )
        took = time.monotonic() - started
    finally:
        if holder.dialect.name != "postgresql":
            holder.execute(text("UNLOCK TABLES"))
        holder.rollback()
        holder.close()
    assert took < 10 and warnings and "waited 1 s so far" in warnings[0]
    assert missing_datasets(engine, ["customers"]) == []  # free again
    assert len(extract(engine, ["customers"], AS_OF, MSK, 30)["customers"]) == 300


def _birthday_shop(settings: Settings) -> None:
    generate_demo_shop(settings.shop_url_resolved, customers=2500, seed=7, today=AS_OF)


@pytest.mark.flow
def test_a_shop_file_deleted_mid_run_stops_the_run_and_nothing_goes_into_the_void(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shop file is deleted after the selection: coupons used to be written into the deleted file
    (204 of 304 mailed codes did not exist afterwards). Now nothing is sent, the run fails naming the
    file, and after the file is back the rerun sends every mail with its coupon in the shop."""
    import flows.campaign
    from flows.campaign import campaign_flow

    _birthday_shop(settings)
    path = Path(settings.shop_url_resolved.removeprefix("sqlite:///"))
    kept = path.with_name("kept.sqlite")
    select_recipients = flows.campaign.select_recipients_task

    def select_then_delete(*args, **kwargs):
        selection = select_recipients(*args, **kwargs)
        shutil.copy(path, kept)
        path.unlink()  # what a cleanup script or a restore does while the run is at work
        return selection

    monkeypatch.setattr(flows.campaign, "select_recipients_task", select_then_delete)
    with pytest.raises(RuntimeError, match="batches failed") as caught:
        campaign_flow(campaign="birthday", as_of=AS_OF, preapproved=True)
    said = explain(caught.value).message
    assert f"the SQLite database file {path} was deleted while Shopmail was using it" in said
    assert "Restore the shop database (SHOPMAIL_SHOP_DB_URL)" in said
    assert not path.exists()  # SQLite did not quietly create an empty shop in its place
    assert set(_ledger_statuses(settings, "birthday")) <= {"failed", "holdout"}
    assert not settings.outbox_path.exists() or not list(settings.outbox_path.glob("*.eml"))

    monkeypatch.setattr(flows.campaign, "select_recipients_task", select_recipients)
    shutil.move(kept, path)
    report = campaign_flow(campaign="birthday", as_of=AS_OF, preapproved=True)
    sent = report.counts()["sent"]
    assert sent > 0 and sent == len(list(settings.outbox_path.glob("*.eml")))
    with get_engine(settings.shop_url_resolved).connect() as conn:
        in_shop = conn.execute(text("SELECT count(*) FROM coupons WHERE code LIKE 'BDAY-%'")).scalar()
    assert in_shop == sent


@pytest.mark.flow
def test_coupons_the_shop_lost_are_inserted_again_by_the_next_run(
    prefect_harness, settings: Settings
) -> None:
    from flows.campaign import campaign_flow

    _birthday_shop(settings)
    first = campaign_flow(campaign="birthday", as_of=AS_OF, preapproved=True)
    sent = first.counts()["sent"]
    shop = get_engine(settings.shop_url_resolved)
    with shop.begin() as conn:  # the shop restored from last night's backup: today's coupons are gone
        codes = set(conn.execute(text("SELECT code FROM coupons WHERE code LIKE 'BDAY-%'")).scalars())
        conn.execute(text("DELETE FROM coupons WHERE code LIKE 'BDAY-%'"))
    assert len(codes) == sent > 0
    again = campaign_flow(campaign="birthday", as_of=AS_OF, preapproved=True)
    assert again.counts()["sent"] == 0 and again.outcomes["coupons_restored"] == sent
    assert "coupons mailed earlier but missing from the shop, inserted again" in again.markdown("completed")
    with shop.connect() as conn:
        assert set(conn.execute(text("SELECT code FROM coupons WHERE code LIKE 'BDAY-%'")).scalars()) == codes
    assert campaign_flow(campaign="birthday", as_of=AS_OF, preapproved=True).outcomes["coupons_restored"] == 0


# --- the state DB: its write-ahead log, a read-only or full disk ------------------------------------------


@pytest.mark.flow
def test_the_state_db_write_ahead_log_stays_small_during_a_long_run(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log grew about 3 KB per mail until the disk was full: it is now checkpointed and truncated
    whenever it passes the limit (256 KB here, 16 MB in production). Without it the file never shrinks:
    SQLite reuses a reset log from its start but keeps its size, and under steady readers never resets."""
    from flows.campaign import campaign_flow

    limit = 256 * 1024
    monkeypatch.setattr(shopmail.db, "WAL_LIMIT_BYTES", limit)
    monkeypatch.setattr(shopmail.db, "WAL_CHECK_EVERY_S", 0.0)
    monkeypatch.setenv("SHOPMAIL_SEND_BATCH_SIZE", "100")  # many small transactions, as a long run has
    monkeypatch.setenv("SHOPMAIL_FREQUENCY_CAP", "0")
    get_settings.cache_clear()
    checkpoints: list[bool] = []
    real_checkpoint = shopmail.db.checkpoint_wal
    monkeypatch.setattr(
        shopmail.db, "checkpoint_wal", lambda c: checkpoints.append(real_checkpoint(c)) or True
    )
    generate_demo_shop(settings.shop_url_resolved, customers=3000, seed=7, today=AS_OF)
    wal = Path(settings.state_url_resolved.removeprefix("sqlite:///") + "-wal")
    sizes: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            sizes.append(wal.stat().st_size if wal.exists() else 0)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = campaign_flow(campaign="new_arrivals", as_of=AS_OF, preapproved=True)
    finally:
        done.set()
        watcher.join()
    assert report.counts()["sent"] > 1500
    written = sum(max(0, after - before) for before, after in zip(sizes, sizes[1:], strict=False))
    emptied = sum(1 for before, after in zip(sizes, sizes[1:], strict=False) if before > 0 and after == 0)
    assert written > 12 * limit  # the run wrote far more than the limit into the log...
    assert any(checkpoints) and emptied >= 3  # ...which was emptied again and again (never by SQLite itself)
    # Bounded, not growing with the run: eight send threads keep readers on the log, so a checkpoint
    # often waits (about half failed on a loaded machine) and the log can reach the limit plus several
    # concurrent batches' writes (1.5-6 MB seen here against 9 MB written), never the whole run's writes.
    assert max(sizes) < 0.75 * written, (max(sizes), written)


def _namespace_shell(script: str, **env: str) -> subprocess.CompletedProcess:
    """`script` in a private mount namespace (unshare: the test mounts without touching the machine)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this kernel refuses unprivileged mount namespaces: {probe.stderr.strip()}")
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_read_only_state_disk_is_one_sentence_naming_path_and_setting(
    settings: Settings, tmp_path: Path
) -> None:
    """It ended in "Unexpected error: OSError: [Errno 30] Read-only file system: …migrate.lock"."""
    disk = tmp_path / "ro"
    disk.mkdir()
    state = disk / "state.sqlite"
    done = _namespace_shell(
        f"mount -t tmpfs -o size=1m tmpfs {disk} && mount -o remount,ro {disk} && "
        f"{sys.executable} -m shopmail.cli history",
        SHOPMAIL_STATE_DB_URL=f"sqlite:///{state}",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr.strip()
    assert said.startswith(f"Cannot write {state}") and "the file system there is read-only" in said, said
    assert "SHOPMAIL_STATE_DB_URL" in said and "Unexpected error" not in said and len(said.splitlines()) == 1


def test_a_full_state_disk_is_one_sentence_naming_the_setting(settings: Settings, tmp_path: Path) -> None:
    disk = tmp_path / "full"
    disk.mkdir()
    done = _namespace_shell(
        f"mount -t tmpfs -o size=48k tmpfs {disk} && {sys.executable} -m shopmail.cli history",
        SHOPMAIL_STATE_DB_URL=f"sqlite:///{disk / 'state.sqlite'}",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr.strip()
    assert "database or disk is full" in said and "The disk holding it is full" in said, said
    assert "SHOPMAIL_STATE_DB_URL" in said and "Unexpected error" not in said
