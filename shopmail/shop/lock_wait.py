"""Bounded waits for a shop database another program holds locked (plain functions, no Prefect).

A read of the shop can meet a lock: SQLite answers "database is locked" after its busy timeout,
PostgreSQL and MariaDB cancel a statement after `LOCK_TIMEOUT_S` (set per read by `lock_timeouts`:
without it a read behind an `ALTER TABLE` waits for ever). `wait_while_locked` tries again, saying
each time what is locked and how long it has waited, and gives up with `ShopDatabaseLocked` once
`limit_s` (SHOPMAIL_SHOP_LOCK_WAIT_S) has passed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy import Connection, text

T = TypeVar("T")
LOCK_TIMEOUT_S = 30  # one statement waits at most this long for a lock (PostgreSQL, MariaDB)
PAUSE_S = 5.0  # between two tries
LOCK_MARKERS = (
    "database is locked",  # SQLite, busy timeout over
    "database table is locked",  # SQLite
    "lock timeout",  # PostgreSQL 55P03 "canceling statement due to lock timeout"
    "lock wait timeout exceeded",  # MariaDB/MySQL 1205
)


class ShopDatabaseLocked(RuntimeError):
    """The shop database stayed locked by another program longer than the run may wait."""


def is_lock_error(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is a database lock that did not come free in time."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ShopDatabaseLocked):
            return True
        if any(marker in str(current).lower() for marker in LOCK_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def wait_while_locked(
    action: Callable[[], T],
    *,
    limit_s: float,
    warn: Callable[..., object],
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """`action()`, tried again while it fails on a lock, for at most `limit_s` seconds in all; each
    failed try is a warning naming `what` and how long it has waited. Other errors pass at once."""
    start = clock()
    tries = 0
    while True:
        tries += 1
        try:
            return action()
        except Exception as exc:
            if not is_lock_error(exc) or isinstance(exc, ShopDatabaseLocked):
                raise
            waited = clock() - start
            if waited + PAUSE_S >= limit_s:
                raise ShopDatabaseLocked(
                    f"{what} stayed locked by another program: waited {waited:.0f} s over {tries} tries "
                    f"(SHOPMAIL_SHOP_LOCK_WAIT_S={limit_s:g})"
                ) from exc
            warn(
                "%s is locked by another program: waited %.0f s so far, trying again in %.0f s (at most %g s "
                "in all, SHOPMAIL_SHOP_LOCK_WAIT_S)",
                what,
                waited,
                PAUSE_S,
                limit_s,
            )
            sleep(PAUSE_S)


@contextlib.contextmanager
def lock_timeouts(conn: Connection, seconds: float | None = None) -> Iterator[None]:
    """Within the block, a statement on `conn` waits at most `seconds` (default `LOCK_TIMEOUT_S`) for a
    lock (PostgreSQL `lock_timeout`, MariaDB/MySQL `lock_wait_timeout` and `innodb_lock_wait_timeout`;
    SQLite has its busy timeout already). The session's own values come back afterwards."""
    seconds = LOCK_TIMEOUT_S if seconds is None else seconds
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text(f"SET lock_timeout = {int(seconds * 1000)}"))
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute(text("RESET lock_timeout"))
        return
    if dialect in ("mysql", "mariadb"):
        conn.execute(
            text(f"SET SESSION lock_wait_timeout = {int(seconds)}, innodb_lock_wait_timeout = {int(seconds)}")
        )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute(
                    text("SET SESSION lock_wait_timeout = DEFAULT, innodb_lock_wait_timeout = DEFAULT")
                )
        return
    yield
