"""Commands that start in a blink, and one local Prefect server for every command.

- `shopmail --help`, `campaigns`, `history` and `why --help` import neither Prefect nor Great
  Expectations nor pandas; `check-shop` (which runs the campaigns' data checks) imports no Prefect.
- Without PREFECT_API_URL the first `shopmail run` starts a local Prefect server that outlives it;
  the next command reuses it (same process), `shopmail server stop` stops it. A healthy run prints no
  ERROR line and no traceback (no telemetry job failing on a locked database).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from config.settings import Settings
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.run import local_prefect

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("prefect", "great_expectations", "pandas")
PROBE = """
import runpy, sys
sys.argv = ["shopmail", *sys.argv[1:]]
try:
    runpy.run_module("shopmail.cli", run_name="__main__")
except SystemExit:
    pass
sys.stderr.write("\\nLOADED " + " ".join(m for m in {heavy!r} if m in sys.modules) + "\\n")
"""


def _loaded(env: dict[str, str], *args: str) -> set[str]:
    """The heavy modules a `shopmail` command imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = [line for line in done.stderr.splitlines() if line.startswith("LOADED")][-1]
    return set(line.split()[1:])


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "SHOPMAIL_DATA_DIR": str(settings.data_dir)}


@pytest.mark.parametrize("args", [("--help",), ("campaigns",), ("history",), ("why", "--help")])
def test_light_commands_import_nothing_heavy(cli_env: dict[str, str], args: tuple[str, ...]) -> None:
    assert _loaded(cli_env, *args) == set()


def test_check_shop_imports_no_prefect(cli_env: dict[str, str], settings: Settings) -> None:
    generate_demo_shop(settings.shop_url_resolved, customers=300, seed=2, today=date(2026, 11, 23))
    loaded = _loaded(cli_env, "check-shop", "--as-of", "2026-11-23")
    assert "prefect" not in loaded and "great_expectations" in loaded  # it runs the data checks


@pytest.mark.flow
def test_run_without_prefect_api_url_starts_one_local_server_and_reuses_it(settings: Settings) -> None:
    data = settings.data_dir
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["SHOPMAIL_DATA_DIR"] = str(data)
    generate_demo_shop(settings.shop_url_resolved, customers=500, seed=2, today=date(2026, 11, 23))
    run = [sys.executable, "-m", "shopmail.cli", "run", "welcome", "--as-of", "2026-11-23", "--dry-run"]
    try:
        first = subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        assert "Local Prefect server started" in first.stdout
        server = local_prefect.recorded(data)
        assert server is not None
        second = subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        assert "Local Prefect server started" not in second.stdout
        assert local_prefect.recorded(data) == server  # the same process served both
        for output in (first.stdout + first.stderr, second.stdout + second.stderr):
            assert "would send" in output
            assert "| ERROR" not in output and "Traceback" not in output
            assert "Starting temporary server" not in output
        status = subprocess.run(
            [sys.executable, "-m", "shopmail.cli", "server", "status"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert server.ui in status.stdout
        state = json.loads((data / local_prefect.STATE_FILE).read_text())
        assert state["pid"] == server.pid
    finally:
        stopped = local_prefect.stop(data)
    assert stopped is not None and local_prefect.recorded(data) is None
    with pytest.raises(ProcessLookupError):
        os.kill(stopped.pid, 0)
