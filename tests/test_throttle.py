"""Request pacing and the run-wide error budget."""

from __future__ import annotations

import threading

from shopmail.mailer.throttle import ErrorBudget, RateLimiter, run_budget


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_requests_after_the_burst() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10, burst=2, clock=fake.clock, sleep=fake.sleep)
    for _ in range(12):
        limiter.acquire()
    # 2 at once, then 10 more at 10/s: about one second
    assert 0.95 <= fake.now <= 1.05


def test_rate_limiter_is_thread_safe() -> None:
    limiter = RateLimiter(1_000_000)
    done = []

    def work() -> None:
        for _ in range(1000):
            limiter.acquire()
        done.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 4


def test_error_budget_exhausts_after_its_limit_and_is_shared_per_run() -> None:
    budget = ErrorBudget(limit=2)
    budget.record_failure(2)
    assert not budget.exhausted
    budget.record_failure()
    assert budget.exhausted
    assert run_budget("run-x", 5) is run_budget("run-x", 5)
    assert run_budget("run-x", 5) is not run_budget("run-y", 5)
