"""Log filter for Prefect's handlers (config/logging.yml): drops the engine's routine lines that bury
what a marketer reads in a run's log: one "Finished in state Completed()" per task and "Downloading
flow code from storage at '.'", and the engine's traceback for a run that *chose* to end Cancelled
(a rejected approval: Prefect 3.9's engine re-raises the Cancelled state as `CancelledRun` and logs
it as an unexpected exception). Failures, warnings and every other line stay."""

from __future__ import annotations

import logging

ROUTINE = ("Finished in state Completed(", "Downloading flow code from storage at")


class QuietRoutine(logging.Filter):
    """Drop routine INFO lines of the Prefect engine (they stay visible at DEBUG level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and type(record.exc_info[1]).__name__ == "CancelledRun":
            return False  # the run's own "Cancelled" line says why; no traceback for a decision
        if record.levelno != logging.INFO or not record.name.startswith("prefect"):
            return True
        message = record.getMessage()
        return not message.startswith(ROUTINE) or logging.getLogger("prefect").isEnabledFor(logging.DEBUG)
