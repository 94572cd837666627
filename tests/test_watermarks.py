"""Poller watermarks move forward only, and two pollers setting the first one at once both succeed."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shopmail.state import state_db

T0 = datetime(2026, 11, 23, 10, 0)


def _race(url: str) -> None:
    engine = state_db.upgrade(url)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def poller(i: int) -> None:
        barrier.wait()
        try:
            state_db.set_watermark(engine, "welcome", T0 + timedelta(minutes=i))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert state_db.get_watermark(engine, "welcome") == T0 + timedelta(minutes=7)
    state_db.set_watermark(engine, "welcome", T0)  # never back
    assert state_db.get_watermark(engine, "welcome") == T0 + timedelta(minutes=7)


def test_first_watermark_race_on_sqlite(tmp_path: Path) -> None:
    _race(f"sqlite:///{tmp_path / 'state.sqlite'}")


@pytest.mark.integration
def test_first_watermark_race_on_postgresql() -> None:
    from tests.test_shop_databases import SERVERS, _scratch_database

    scratch = _scratch_database(SERVERS["postgresql"])
    try:
        _race(next(scratch))
    finally:
        next(scratch, None)
