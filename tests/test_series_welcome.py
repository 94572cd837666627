"""The welcome series over a simulated week of service polls (the real poller flow under the Prefect
test harness; the poll clock advanced 6 hours at a time): every new customer gets the three steps in
order, none before its moment, none twice, each picked up by the first poll after it fell due. The same
series on a PostgreSQL state DB."""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, select, text, update

from config.settings import Settings, get_settings
from shopmail.campaigns import load_campaign, registry
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.shop import schema
from shopmail.state import state_db
from shopmail.state.schema import send_ledger

SERIES_FILE = Path(__file__).resolve().parent.parent / "config" / "campaigns" / "welcome.toml"
W0 = datetime(2026, 11, 10, 6, 0)  # naive UTC: the week starts
POLL = timedelta(hours=6)


def _week_of_polls(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from flows.service_poller import service_poller

    folder = tmp_path / "campaigns"
    folder.mkdir()
    shutil.copy(SERIES_FILE, folder / "welcome.toml")
    monkeypatch.setenv("SHOPMAIL_CAMPAIGNS_DIR", str(folder))
    get_settings.cache_clear()
    registry.cache_clear()
    settings = get_settings()
    steps = load_campaign(folder / "welcome.toml").steps

    generate_demo_shop(
        settings.shop_url_resolved, customers=200, seed=3, today=(W0 - timedelta(days=10)).date()
    )
    shop = get_engine(settings.shop_url_resolved)
    with shop.begin() as conn:
        conn.execute(update(schema.customers).values(registered_at=W0 - timedelta(days=30)))
        ids = [
            r.id
            for r in conn.execute(select(schema.customers.c.id).where(schema.customers.c.email.like("%@%.%")))
        ][:12]
        registered = {cid: W0 + timedelta(hours=4 * n + 1) for n, cid in enumerate(ids)}  # over two days
        for cid, at in registered.items():
            conn.execute(
                update(schema.customers).where(schema.customers.c.id == cid).values(registered_at=at)
            )

    clock = {"now": W0}
    monkeypatch.setattr(state_db, "utcnow", lambda: clock["now"])
    state = state_db.upgrade(settings.state_url_resolved)
    sent_at: dict[tuple[int, str], list[datetime]] = {}
    seen: set[str] = set()
    while clock["now"] <= W0 + timedelta(days=8):
        service_poller(campaigns=["welcome"])
        with state.connect() as conn:
            rows = conn.execute(
                select(
                    send_ledger.c.message_key, send_ledger.c.customer_id, send_ledger.c.occasion_key
                ).where(send_ledger.c.campaign == "welcome", send_ledger.c.status == "sent")
            ).all()
        for key, cid, occasion in rows:
            if key not in seen:
                seen.add(key)
                sent_at.setdefault((cid, occasion.rsplit(":", 1)[1]), []).append(clock["now"])
        clock["now"] += POLL

    assert {cid for cid, _ in sent_at} == set(registered)  # every new customer, nobody else
    for cid, at in registered.items():
        times = []
        for number, step in enumerate(steps, start=1):
            [when] = sent_at[(cid, f"step{number}")]  # exactly once
            due = at + timedelta(hours=step.delay_hours)
            assert due <= when < due + POLL, (cid, number)  # never early; the first poll after it fell due
            times.append(when)
        assert times == sorted(times) and len(set(times)) == len(times)  # in order, one step per poll
    outbox = list(settings.outbox_path.glob("*.eml"))
    assert len(outbox) == 3 * len(registered)


def test_welcome_series_over_a_week_of_polls(
    prefect_harness, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _week_of_polls(settings, monkeypatch, tmp_path)


@pytest.fixture
def postgres_state(monkeypatch: pytest.MonkeyPatch):
    """A fresh PostgreSQL database (unique name) as the state DB, dropped afterwards."""
    name = f"shopmail_series_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432: {exc}")
    monkeypatch.setenv("SHOPMAIL_STATE_DB_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield name
    get_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}").dispose()
    get_engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_welcome_series_on_a_postgresql_state_db(
    prefect_harness, settings: Settings, postgres_state: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert get_settings().state_url_resolved.startswith("postgresql")
    _week_of_polls(settings, monkeypatch, tmp_path)
    with create_engine(get_settings().state_url_resolved).connect() as conn:
        entries = pd.read_sql(text("SELECT * FROM series_entries"), conn)
    assert len(entries) == 12 and entries["exit_reason"].isna().all()
