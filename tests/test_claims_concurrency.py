"""Atomic ledger claims under real concurrency, on SQLite, PostgreSQL and MariaDB.

Many claimers (threads, each with its own connection and run id) race on the same keys at the same
moment; the state DB is a real file or a scratch database on the local servers (see
tests/test_shop_databases.py; the servers must be running: these tests fail, not skip).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from config.settings import Settings, get_settings
from shopmail.campaigns import get_campaign
from shopmail.mailer.base import SendResult, SendStatus
from shopmail.run.pipeline import claim_cap
from shopmail.state import ledger, state_db
from shopmail.state.ledger import Claim, LedgerEntry
from shopmail.state.schema import send_ledger
from tests.test_shop_databases import SERVERS, _scratch_database

pytestmark = pytest.mark.integration
CLAIMERS = 8


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated state DB: a SQLite file, or a scratch database on the PostgreSQL/MariaDB server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
        yield state_db.upgrade(url)
        state_db._migrated.discard(url)
        return
    scratch = _scratch_database(SERVERS[request.param])
    url = next(scratch)
    try:
        yield state_db.upgrade(url)
    finally:
        state_db._migrated.discard(url)
        next(scratch, None)


def _race(claimers: int, action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` in `claimers` threads released at the same moment."""
    start = threading.Barrier(claimers)

    def go(i: int) -> Any:
        start.wait()
        return action(i)

    with ThreadPoolExecutor(claimers) as pool:
        return list(pool.map(go, range(claimers)))


def _entries(n: int, campaign: str = "sale") -> list[LedgerEntry]:
    return [LedgerEntry(campaign, f"occ:{i}", 1000 + i) for i in range(n)]


def _winners(claims: list[Claim], pick: Callable[[Claim], list[str]]) -> Counter:
    return Counter(k for c in claims for k in pick(c))


def test_many_claimers_on_the_same_keys_each_key_won_exactly_once(state: Engine) -> None:
    entries = _entries(300)
    keys = {e.key for e in entries}

    def claim(i: int) -> Claim:
        mine = entries[:]
        random.Random(i).shuffle(mine)  # different orders: no claimer is favoured by the row order
        return ledger.claim(state, mine, f"run-{i}", "memory")

    claims = _race(CLAIMERS, claim)
    won = _winners(claims, lambda c: c.fresh)
    assert set(won) == keys and max(won.values()) == 1  # each key inserted by exactly one claimer
    assert all(c.in_doubt == [] for c in claims)
    for c in claims:  # what a claimer did not win it sees as held by a live run (skipped, not sent)
        assert set(c.held_by_other) == keys - set(c.fresh)
    with state.connect() as conn:
        rows = conn.execute(select(send_ledger.c.message_key, send_ledger.c.run_id)).all()
    owner = {c.token: f"run-{i}" for i, c in enumerate(claims)}
    assert len(rows) == len(keys)
    by_key = dict(rows)
    for c in claims:
        assert {by_key[k] for k in c.fresh} <= {owner[c.token]}

    # the same race on `failed` rows (taken by compare-and-set): again one winner per key, retried
    ledger.mark(state, [SendResult(k, SendStatus.failed, error="503") for k in keys])
    retaken = _race(CLAIMERS, lambda i: ledger.claim(state, entries, f"rerun-{i}", "memory"))
    won = _winners(retaken, lambda c: c.retry)
    assert set(won) == keys and max(won.values()) == 1
    assert all(c.fresh == [] for c in retaken)
    with state.connect() as conn:
        attempts = conn.execute(select(func.max(send_ledger.c.attempts))).scalar_one()
    assert attempts == 2


def test_a_live_run_keeps_its_rows_a_dead_runs_rows_become_in_doubt(state: Engine) -> None:
    entries = _entries(20)
    lease = 1.5
    first = ledger.claim(state, entries, "run-a", "memory", lease_seconds=lease)
    assert len(first.fresh) == 20
    with ledger.Heartbeat(state, "run-a", first.token, lease) as beat:
        time.sleep(lease * 2.5)  # well past the first lease: only the heartbeat keeps run-a alive
        live = ledger.claim(state, entries, "run-b", "memory", lease_seconds=lease)
        assert live.keys == [] and len(live.held_by_other) == 20
        assert beat.beats >= 2
    # run-a had requested every row; it stops beating (dies); once its lease ran out, run-b takes every
    # row over, in doubt
    assert len(ledger.mark_requested(state, [e.key for e in entries], first.token)) == 20
    ledger.mark(
        state, [SendResult(entries[0].key, SendStatus.sent, "pid")], token=first.token
    )  # one went out
    time.sleep(lease + 0.5)
    taken = ledger.claim(state, entries, "run-b", "memory", lease_seconds=lease)
    assert taken.fresh == [] and len(taken.in_doubt) == 19 and taken.held_by_other == []
    # the dead run's late outcome no longer overwrites rows it lost
    late = [SendResult(k, SendStatus.failed, error="late") for k in taken.in_doubt]
    ledger.mark(state, late, token=first.token)
    ledger.mark(state, late, "run-a")
    assert set(ledger.statuses(state, taken.in_doubt).values()) == {"pending"}
    # another attempt of run-b (a re-executed task) does not take them while run-b's attempt lives
    again = ledger.claim(state, entries, "run-b", "memory", lease_seconds=lease)
    assert again.keys == [] and sorted(again.held_by_own_run) == sorted(taken.in_doubt)


@pytest.fixture
def capped(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SHOPMAIL_FREQUENCY_CAP", "1")
    get_settings.cache_clear()
    return get_settings()


def _over_cap(state: Engine, cap: int) -> int:
    with state.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.customer_id, func.count())
            .where(send_ledger.c.status.in_(ledger.CLAIMED_STATES))
            .group_by(send_ledger.c.customer_id)
        ).all()
    return sum(1 for _, n in rows if n > cap)


@pytest.mark.parametrize("claim_time_cap", [True, False], ids=["claim-time-cap", "selection-only"])
def test_two_campaigns_at_once_never_exceed_the_frequency_cap(
    state: Engine, capped: Settings, claim_time_cap: bool
) -> None:
    """`sale` and `new_arrivals` claim the same 400 customers at once in batches of 50 (4 claimers
    each, as their send tasks would), SHOPMAIL_FREQUENCY_CAP=1. With the claim-time re-check nobody is
    over the cap; without it (selection-time arbitration only, the old behaviour) everybody is."""
    customers = list(range(1, 401))
    campaigns = {"sale": get_campaign("sale"), "new_arrivals": get_campaign("new_arrivals")}
    work: list[tuple[str, list[LedgerEntry]]] = []
    for name in campaigns:
        order = customers[:]
        random.Random(name).shuffle(order)
        batch = [LedgerEntry(name, f"{name}:2026-W48", c) for c in order]
        work += [(name, batch[i : i + 50]) for i in range(0, len(batch), 50)]
    random.Random(3).shuffle(work)

    def run(i: int) -> list[Claim]:
        out = []
        for name, batch in work[i::CLAIMERS]:
            cap = claim_cap(campaigns[name], capped) if claim_time_cap else None
            out.append(
                send_task_retries(
                    lambda b=batch, n=name, c=cap: ledger.claim(state, b, f"{n}-run", "memory", cap=c)
                )
            )
        return out

    claims = [c for group in _race(CLAIMERS, run) for c in group]
    over = _over_cap(state, 1)
    if not claim_time_cap:
        assert over == len(customers)  # the control: the race is real
        return
    assert over == 0
    mailed = sum(len(c.keys) for c in claims)
    assert mailed == len(customers)  # everybody got exactly one of the two
    assert sum(len(c.capped) for c in claims) == len(customers)  # the other one: frequency_cap


def send_task_retries(action: Callable[[], Claim]) -> Claim:
    """As tasks/send.py (`with_db_retries`): a claim that hit a deadlock or a locked DB is retried."""
    for attempt in range(8):
        try:
            return action()
        except OperationalError:
            if attempt == 7:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def test_claim_time_cap_keeps_the_priority_rule(state: Engine, settings: Settings) -> None:
    """Daily cap 1, window cap 3: a higher-priority campaign still claims after a lower one."""
    low, high = get_campaign("new_arrivals"), get_campaign("sale")
    assert high.priority > low.priority
    people = [LedgerEntry("new_arrivals", "na:1", c) for c in (1, 2)]
    assert len(ledger.claim(state, people, "r1", "memory", cap=claim_cap(low, settings)).fresh) == 2
    sale = [LedgerEntry("sale", "sale:1", c) for c in (1, 2)]
    assert len(ledger.claim(state, sale, "r2", "memory", cap=claim_cap(high, settings)).fresh) == 2
    again = [LedgerEntry("new_arrivals", "na:2", 1)]
    result = ledger.claim(state, again, "r3", "memory", cap=claim_cap(low, settings))
    assert result.keys == [] and result.capped == [again[0].key]
    # a resumed mail (own key, a dead run's pending row) is never capped by itself
    later = state_db.utcnow() + timedelta(hours=1)
    resumed = ledger.claim(state, people[:1], "r4", "memory", cap=claim_cap(low, settings), now=later)
    assert resumed.retry == [people[0].key] and resumed.capped == []  # never requested: retried
