"""A local Prefect server that outlives the command: `shopmail run` and `poll` without PREFECT_API_URL.

Prefect's own fallback starts a temporary server for every command and stops it at the end (about
10-20 s each time, and its 20 s start-up limit fails on a busy machine). Instead the first command
starts `prefect server start` in the background on a free loopback port, with its home and database in
the data folder, waits for it (up to `STARTUP_TIMEOUT_S`, saying so), and records it in
`<data_dir>/prefect-server.json`; later commands find it there and reuse it. `shopmail server stop`
stops it; `shopmail server status` shows it. Two commands starting at once start one server (a file
lock). The server's own log goes to `<data_dir>/prefect-server.log`, not to the terminal, and its
telemetry is off.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.request import urlopen

STATE_FILE = "prefect-server.json"
LOG_FILE = "prefect-server.log"
STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class LocalServer:
    """A running local Prefect server: its API URL, process id, and whether this call started it."""

    url: str
    pid: int
    started_now: bool = False

    @property
    def ui(self) -> str:
        return self.url.removesuffix("/api")


def _healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urlopen(f"{url}/health", timeout=timeout_s) as response:  # noqa: S310 - our loopback URL
            return response.status == 200
    except (OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with open(data_dir / (STATE_FILE + ".lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recorded(data_dir: Path) -> LocalServer | None:
    """The server recorded in the data folder, if its process lives and it answers."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        server = LocalServer(str(state["url"]), int(state["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(server.pid) and _healthy(server.url):
        return server
    return None


def server_env(data_dir: Path) -> dict[str, str]:
    """The server process's environment: its home and SQLite database in the data folder, no
    telemetry, no analytics."""
    home = data_dir / "prefect"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL=env.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    )
    return env


def start(
    data_dir: Path, timeout_s: float = STARTUP_TIMEOUT_S, progress: Callable[[float], None] | None = None
) -> LocalServer:
    """Start a server in the background (its own session: it outlives this process) and wait until it
    answers; `progress(seconds)` is called while waiting. Raises RuntimeError with its log's end if it
    does not come up."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    (data_dir / "prefect").mkdir(parents=True, exist_ok=True)
    log = data_dir / LOG_FILE
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    started = time.monotonic()
    while not _healthy(url):
        waited = time.monotonic() - started
        if process.poll() is not None or waited > timeout_s:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(
                f"the local Prefect server did not start within {waited:.0f} s (log {log}):\n{tail}"
            )
        if progress is not None:
            progress(waited)
        time.sleep(0.25)
    state = {"url": url, "pid": process.pid, "started_at": time.time(), "log": str(log)}
    (data_dir / STATE_FILE).write_text(json.dumps(state))
    return LocalServer(url, process.pid, started_now=True)


def ensure(
    data_dir: Path, timeout_s: float = STARTUP_TIMEOUT_S, progress: Callable[[float], None] | None = None
) -> LocalServer:
    """The recorded server, or a new one started now (one at a time across processes)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        return recorded(data_dir) or start(data_dir, timeout_s, progress)


def stop(data_dir: Path, timeout_s: float = 30.0) -> LocalServer | None:
    """Stop the recorded server (SIGTERM to its process group, then SIGKILL); the server it was, or
    None when none ran."""
    with _locked(data_dir):
        state_file = data_dir / STATE_FILE
        try:
            state = json.loads(state_file.read_text())
            server = LocalServer(str(state["url"]), int(state["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        state_file.unlink(missing_ok=True)
        if not _alive(server.pid):
            return None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, sig)
            deadline = time.monotonic() + timeout_s
            while _alive(server.pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(server.pid, os.WNOHANG)
                time.sleep(0.1)
            if not _alive(server.pid):
                break
        return server


def describe(server: LocalServer) -> dict[str, object]:
    return asdict(server) | {"ui": server.ui}
