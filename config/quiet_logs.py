"""Log filter for Prefect's handlers (config/logging.yml): drops the engine's routine lines that bury
what a marketer reads in a run's log: one "Finished in state Completed()" per task, "Downloading
flow code from storage at '.'" and the deployment pull step's lines, and the engine's traceback for
a run that *chose* to end Cancelled (a rejected approval: Prefect 3.9's engine re-raises the
Cancelled state as `CancelledRun` and logs it as an unexpected exception). Failures, warnings and
every other line stay.

One logging set-up on every path: `LOGGING_CONFIG` is what PREFECT_LOGGING_SETTINGS_PATH names for
the CLI (`use_logging_config` before Prefect is imported), `shopmail serve` and the runs it starts,
and the runs of a work pool (prefect.yaml sets it in each deployment's job variables;
`quiet_flow_run_process` applies it in a flow-run process started without it)."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path

LOGGING_CONFIG = Path(__file__).resolve().with_name("logging.yml")
SETTING = "PREFECT_LOGGING_SETTINGS_PATH"
ROUTINE = (
    "Finished in state Completed(",
    "Downloading flow code from storage at",
    # the pull step of a work pool's run (prefect/runner, prefect/deployments/steps/core.py)
    "Running 1 deployment pull step",
    "Executing deployment step: ",
    "Deployment step '",
    "All deployment steps completed successfully",
)


def use_logging_config(environ: MutableMapping[str, str] = os.environ) -> str:
    """Point PREFECT_LOGGING_SETTINGS_PATH at `LOGGING_CONFIG` unless it names a file already; the
    path in effect. Call before Prefect is imported (or call `setup_logging` after)."""
    current = environ.get(SETTING, "")
    if not current or not Path(current).is_file():
        environ[SETTING] = current = str(LOGGING_CONFIG)
    return current


def quiet_flow_run_process() -> bool:
    """In a flow-run process a worker started (PREFECT__FLOW_RUN_ID set) without Shopmail's logging
    settings: apply them now (before the flow's own lines); whether it did."""
    if not os.environ.get("PREFECT__FLOW_RUN_ID") or os.environ.get(SETTING) == str(LOGGING_CONFIG):
        return False
    if os.environ.get(SETTING) and Path(os.environ[SETTING]).is_file():
        return False  # the operator's own logging settings
    os.environ[SETTING] = str(LOGGING_CONFIG)
    apply_logging_config()
    return True


def apply_logging_config() -> None:
    """Configure this process's logging from `LOGGING_CONFIG` now (Prefect read its settings, the
    logging settings path among them, when it was imported: changing the environment is not enough)."""
    from prefect.logging.configuration import setup_logging
    from prefect.settings import PREFECT_LOGGING_SETTINGS_PATH, temporary_settings

    with temporary_settings(updates={PREFECT_LOGGING_SETTINGS_PATH: LOGGING_CONFIG}):
        setup_logging(incremental=False)


class QuietRoutine(logging.Filter):
    """Drop routine INFO lines of the Prefect engine (they stay visible at DEBUG level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and type(record.exc_info[1]).__name__ == "CancelledRun":
            return False  # the run's own "Cancelled" line says why; no traceback for a decision
        if record.levelno != logging.INFO or not record.name.startswith("prefect"):
            return True
        message = record.getMessage()
        return not message.startswith(ROUTINE) or logging.getLogger("prefect").isEnabledFor(logging.DEBUG)
