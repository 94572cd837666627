"""Shared pacing for bulk sending: a request-rate limiter and a run-wide error budget."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)
LONG_WAIT_S = 3.0  # waits longer than this are logged: what is waited for, and until when


class RateLimiter:
    """Token bucket allowing `rate_per_s` acquisitions per second (bursts up to `burst`)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = rate_per_s
        self.capacity = float(burst if burst is not None else max(1, int(rate_per_s)))
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, what: str = "") -> float:
        """Block until one request may go; returns the seconds waited. A wait longer than
        `LONG_WAIT_S` is logged with `what` (e.g. "an Email Activity lookup of 100 doubtful mails")."""
        waited = 0.0
        told = False
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # tolerate float rounding
                    self._tokens = max(0.0, self._tokens - 1)
                    return waited
                wait = max((1 - self._tokens) / self.rate, 1e-4)
            if wait > LONG_WAIT_S and what and not told:
                until = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
                logger.warning("waiting %.0f s (until %s) for the rate limit before %s", wait, until, what)
                told = True
            self._sleep(wait)
            waited += wait


class ErrorBudget:
    """Counts failed requests of a run; once `limit` is passed, sending pauses."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failures = 0
        self._lock = threading.Lock()

    def record_failure(self, count: int = 1) -> None:
        with self._lock:
            self.failures += count

    @property
    def exhausted(self) -> bool:
        return self.failures > self.limit


_budgets: dict[str, ErrorBudget] = {}
_budgets_lock = threading.Lock()


def run_budget(run_id: str, limit: int) -> ErrorBudget:
    """The error budget shared by every batch of one run in this process."""
    with _budgets_lock:
        if run_id not in _budgets:
            _budgets[run_id] = ErrorBudget(limit)
        return _budgets[run_id]


class StopFlag:
    """A process-wide request to stop sending (SIGTERM/SIGINT, see `shopmail.run.interrupt`): senders
    check it before each request; what was not requested yet comes back `failed` (not attempted)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._event.set()

    def clear(self) -> None:
        self.reason = ""
        self._event.clear()

    def __bool__(self) -> bool:
        return self._event.is_set()


stop_requested = StopFlag()


def not_attempted(budget: ErrorBudget | None) -> str | None:
    """Why a request must not go out now (a stop was requested, or the run's error budget is spent),
    or None."""
    if stop_requested:
        return f"not attempted: sending stopped ({stop_requested.reason})"
    if budget is not None and budget.exhausted:
        return f"not attempted: sending paused after {budget.failures} failed requests"
    return None
