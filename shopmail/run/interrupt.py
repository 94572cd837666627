"""Stops that finish the story: SIGTERM (a container or service stop) and SIGINT (Ctrl-C) during a run.

The first signal asks every sender to stop (`throttle.stop_requested`): no new request goes out, the
requests in flight end (bounded by the provider timeout) and their outcomes are recorded; the run then
records itself `interrupted` with its counts and raises `StopRequested`, which the CLI turns into one
sentence and exit code 128 + the signal number. A second signal stops at once (the previous handler:
Prefect's crash path, or Python's default).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from shopmail.mailer.throttle import stop_requested

HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopRequested(RuntimeError):
    """The run stopped on a signal after its in-flight requests ended (summary: `interrupted`)."""

    def __init__(self, message: str, signal_name: str = "") -> None:
        super().__init__(message)
        self.signal_name = signal_name or stop_requested.reason or "a signal"

    @property
    def exit_code(self) -> int:
        number = getattr(signal, self.signal_name, None) if self.signal_name.startswith("SIG") else None
        return 128 + int(number) if number is not None else 1


def stop_if_requested(what: str) -> None:
    """Raise `StopRequested` when a stop signal came (between steps: before `what`)."""
    if stop_requested:
        raise StopRequested(f"stopped by {stop_requested.reason} before {what}; nothing more was sent")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGINT requests a graceful stop; a second one goes to the
    handler that was there before (installed only from the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop_requested.clear()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop_requested:  # the second signal: stop now
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, frame)
            elif signum == signal.SIGINT:
                raise KeyboardInterrupt
            else:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            return
        stop_requested.request(signal.Signals(signum).name)

    for sig in HANDLED:
        previous[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        stop_requested.clear()


_worker_handler_installed = False


def stop_worker_on_sigterm() -> None:
    """In a process-pool worker (tasks run on its main thread): SIGTERM asks its sends to stop
    gracefully instead of killing it mid-request. Once per process; a no-op off the main thread."""
    global _worker_handler_installed
    child = multiprocessing.parent_process() is not None
    if _worker_handler_installed or not child or threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, lambda signum, _frame: stop_requested.request("SIGTERM"))
        _worker_handler_installed = True
