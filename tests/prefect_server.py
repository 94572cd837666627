"""Helpers for end-to-end tests on a real Prefect server: start `prefect server start` on a free
loopback port with its own PREFECT_HOME and SQLite DB, start `shopmail serve` against it, wait on
them and stop them (used by test_prefect_server_e2e.py and test_prefect_scheduler_e2e.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@dataclass(frozen=True)
class PrefectServer:
    """A running Prefect server: its API URL (`http://127.0.0.1:PORT/api`) and its log file."""

    url: str
    log: Path
    process: subprocess.Popen


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, with its children (SIGTERM, then SIGKILL)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def log_tail(log: Path, chars: int = 3000) -> str:
    """The end of a process log, for assertion messages."""
    return log.read_text(errors="replace")[-chars:] if log.exists() else f"(no {log.name})"


def wait_for(check: Callable[[], T], timeout_s: float, what: str, process: subprocess.Popen, log: Path) -> T:
    """Poll `check` until it returns something truthy (returned), `process` dies or time runs out.

    HTTP errors count as "not yet" (a server still starting)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what}: process exited\n{log_tail(log)}")
        try:
            if result := check():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: timed out after {timeout_s:.0f} s\n{log_tail(log)}")


def _spawn(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args, env=dict(env), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextmanager
def running_prefect_server(
    workdir: Path, startup_timeout_s: float = 120, ui: bool = False
) -> Iterator[PrefectServer]:
    """A real Prefect server (no analytics; the UI only when `ui`) with its home, DB and log under
    `workdir`; the UI is then at the URL without `/api`."""
    port = free_port()
    home = workdir / "prefect-home"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
    }
    env.pop("PREFECT_API_URL", None)
    if ui:  # the browser reaches the API at this port, not the default 4200
        env["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
    log = workdir / "server.log"
    process = _spawn(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        log,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(
            lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
            startup_timeout_s,
            "prefect server",
            process,
            log,
        )
        yield PrefectServer(url, log, process)
    finally:
        stop(process)


def sendgrid_serve_env(server: PrefectServer, workdir: Path, data_dir: Path, sendgrid_host: str) -> dict:
    """Environment for `shopmail serve` sending through the SendGrid provider to `sendgrid_host`
    (the local SendGrid server), with non-demo secrets and sender as production requires."""
    from tests.conftest import PRODUCTION_ENV

    return {
        **os.environ,
        **PRODUCTION_ENV,  # the shop profile a real send needs (secrets and sender: the e2e ones below)
        "PREFECT_API_URL": server.url,
        "PREFECT_HOME": str(workdir / "serve-home"),
        "SHOPMAIL_DATA_DIR": str(data_dir),
        "SHOPMAIL_MAIL_PROVIDER": "sendgrid",
        "SHOPMAIL_SENDGRID_HOST": sendgrid_host,
        "SHOPMAIL_SENDGRID_API_KEY": "SG.e2e-key",
        "SHOPMAIL_UNSUBSCRIBE_SECRET": "e2e-unsubscribe-secret-not-the-demo-one",
        "SHOPMAIL_COUPON_SECRET": "e2e-coupon-secret-not-the-demo-one",
        "SHOPMAIL_SENDER_EMAIL": "mail@e2e-shop.example.org",  # not the placeholder default
    }


@contextmanager
def shopmail_serve(env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """`shopmail serve` (as `python -m shopmail.cli serve` from the project root), stopped on exit."""
    process = _spawn([sys.executable, "-m", "shopmail.cli", "serve"], env, log)
    try:
        yield process
    finally:
        stop(process)
