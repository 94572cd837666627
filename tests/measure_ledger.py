"""How long the send ledger takes per 1,000 rows on each backend: the claim (with the claim-time
frequency cap of a marketing campaign), the request fence and the outcome update.

Not a test: `python -m tests.measure_ledger [ROWS]` from the project root (PostgreSQL and MariaDB of
this machine, SQLite in a temporary folder; scratch databases are dropped at the end). Each backend
claims ROWS (default 50,000) fresh keys in batches of 1,000 over a ledger that already holds as many
rows of other campaigns (the cap reads them), then fences and marks each batch as one request would.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
SERVERS = {
    "postgresql": os.environ.get("SHOPMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mariadb": os.environ.get("SHOPMAIL_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/mysql"),
}
BATCH = 1000


def scratch(server: str) -> tuple[str, str]:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"shopmail_measure_ledger_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = create_engine(server).url.set(database=name).render_as_string(hide_password=False)
    return url + ("?charset=utf8mb4" if "mysql" in server else ""), name


def drop(server: str, name: str) -> None:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    admin.dispose()


def measure(url: str, rows: int) -> dict[str, float]:
    from config.settings import get_settings
    from shopmail.campaigns import get_campaign
    from shopmail.mailer.base import SendResult, SendStatus
    from shopmail.run.pipeline import claim_cap
    from shopmail.state import ledger, state_db

    state = state_db.upgrade(url)
    settings = get_settings()
    history = [ledger.LedgerEntry("new_arrivals", f"na:{i}", i) for i in range(rows)]
    for start in range(0, rows, BATCH):  # other mails of the window: what the cap reads
        claim = ledger.claim(state, history[start : start + BATCH], "earlier", "memory")
        ledger.mark(state, [SendResult(k, SendStatus.sent, "x") for k in claim.keys], token=claim.token)
    cap = claim_cap(get_campaign("sale"), settings, state_db.utcnow() + timedelta(days=1))
    entries = [ledger.LedgerEntry("sale", f"sale:{i}", i) for i in range(rows)]
    claims, fences, marks = [], [], []
    for start in range(0, rows, BATCH):
        chunk = entries[start : start + BATCH]
        t0 = time.perf_counter()
        claim = ledger.claim(state, chunk, "run", "sendgrid", cap=cap)
        t1 = time.perf_counter()
        owned = ledger.mark_requested(state, claim.keys, claim.token)
        t2 = time.perf_counter()
        ledger.mark(state, [SendResult(k, SendStatus.sent, "msg-1") for k in owned], token=claim.token)
        t3 = time.perf_counter()
        assert len(claim.keys) == len(chunk), (len(claim.keys), len(claim.capped))
        claims.append(t1 - t0)
        fences.append(t2 - t1)
        marks.append(t3 - t2)
    ms = 1000.0
    return {
        "claim ms/1000 (median)": statistics.median(claims) * ms,
        "claim ms/1000 (p90)": sorted(claims)[int(len(claims) * 0.9)] * ms,
        "fence ms/1000": statistics.median(fences) * ms,
        "mark ms/1000": statistics.median(marks) * ms,
    }


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = measure(f"sqlite:///{Path(folder) / 'state.sqlite'}", rows)
    for kind, server in SERVERS.items():
        url, name = scratch(server)
        try:
            results[kind] = measure(url, rows)
        finally:
            from shopmail.db import get_engine

            get_engine(url).dispose()
            drop(server, name)
    keys = list(next(iter(results.values())))
    print(f"| {rows:,} rows, batches of {BATCH:,} | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{results[k][key]:.1f}" for k in results) + " |")


if __name__ == "__main__":
    main()
