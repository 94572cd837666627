"""The same campaign against real PostgreSQL and MariaDB shop databases (and a PostgreSQL state DB).

These servers run on every machine of this project (and in CI); the tests fail, not skip,
when one is missing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import create_engine, select, text

from config.settings import Settings, get_settings
from shopmail.db import get_engine
from shopmail.devtools.demo_shop import generate_demo_shop
from shopmail.state import state_db
from shopmail.state.schema import send_ledger
from tests.shop_oracle import expected_wakeup

pytestmark = [pytest.mark.integration, pytest.mark.flow]
AS_OF = date(2026, 11, 23)
SERVERS = {
    "postgresql": os.environ.get("SHOPMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mariadb": os.environ.get("SHOPMAIL_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/mysql"),
}


def _scratch_database(server_url: str) -> Iterator[str]:
    """Create a throw-away database on the server, yield its URL, drop it afterwards."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"shopmail_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    if admin.dialect.name == "mysql":
        url += "?charset=utf8mb4"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        get_engine.cache_clear()
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=list(SERVERS))
def server_shop(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch
) -> Iterator[tuple[str, Settings]]:
    """A demo shop on a real server; for PostgreSQL the state DB lives there too."""
    kind = request.param
    with_state = kind == "postgresql"
    shop_gen = _scratch_database(SERVERS[kind])
    shop_url = next(shop_gen)
    state_gen = _scratch_database(SERVERS[kind]) if with_state else None
    state_url = next(state_gen) if state_gen else None
    monkeypatch.setenv("SHOPMAIL_SHOP_DB_URL", shop_url)
    if state_url:
        monkeypatch.setenv("SHOPMAIL_STATE_DB_URL", state_url)
    get_settings.cache_clear()
    generate_demo_shop(shop_url, customers=1500, seed=11, today=AS_OF)
    try:
        yield kind, get_settings()
    finally:
        for gen in (shop_gen, state_gen):
            if gen is not None:
                next(gen, None)


@pytest.mark.usefixtures("single_mail_wakeup")  # wakeup as a single mail: this test predates the series
def test_wakeup_on_a_real_server_matches_sqlite_and_is_idempotent(
    prefect_harness, server_shop, tmp_path
) -> None:
    from flows.campaign import campaign_flow

    kind, settings = server_shop
    assert get_engine(settings.shop_url_resolved).dialect.name in {"postgresql", "mysql"}
    expected = expected_wakeup(get_engine(settings.shop_url_resolved), AS_OF)
    assert expected, f"no wake-up audience on {kind}"

    # the same seed on SQLite gives the same shop, so the same audience
    sqlite_url = f"sqlite:///{tmp_path / 'same_shop.sqlite'}"
    generate_demo_shop(sqlite_url, customers=1500, seed=11, today=AS_OF)
    assert expected_wakeup(get_engine(sqlite_url), AS_OF) == expected

    counts = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    assert counts["sent"] == len(expected)
    state = state_db.upgrade(settings.state_url_resolved)
    if kind == "postgresql":
        assert state.dialect.name == "postgresql"
    with state.connect() as conn:
        rows = conn.execute(
            select(send_ledger.c.customer_id, send_ledger.c.status).where(send_ledger.c.status != "holdout")
        ).all()
    assert {r.customer_id for r in rows} == set(expected)
    assert {r.status for r in rows} == {"sent"}
    assert len(list(settings.outbox_path.glob("*.eml"))) == len(expected)

    again = campaign_flow(campaign="wakeup", as_of=AS_OF).counts()
    assert again["sent"] == 0
    assert len(list(settings.outbox_path.glob("*.eml"))) == len(expected)
