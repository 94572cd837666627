"""Shared pacing for bulk sending: a request-rate limiter and a run-wide error budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


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

    def acquire(self) -> None:
        """Block until one request may go."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # tolerate float rounding
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                wait = max((1 - self._tokens) / self.rate, 1e-4)
            self._sleep(wait)


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
