"""Issue 23's table, re-measured: a real Dask cluster (scheduler and two one-thread workers, separate
processes, started with the project's preload), shop and state DB on PostgreSQL, `sale` on a demo
shop, the local SendGrid server answering each request only after SLOW_S seconds. Scenarios: a warm
cluster without faults; a worker SIGKILLed while its request is in flight; a worker SIGKILLed between
two sends; a cold cluster started beside two CPU hogs. Each scenario reruns until no ledger row is
open, then counts at the server (by customer): duplicates, losses, and the run reports' sent counts.

Not a test: `CUSTOMERS=30000 SLOW_S=6 python -m tests.measure_cluster_faults` from the project root
(a Prefect test server; scratch databases are dropped at the end).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

CUSTOMERS = int(os.environ.get("CUSTOMERS", "30000"))
SLOW_S = float(os.environ.get("SLOW_S", "6"))
AS_OF = date(2026, 11, 23)


def main() -> None:
    from prefect.testing.utilities import prefect_test_harness

    from config.settings import get_settings
    from shopmail.devtools.demo_shop import generate_demo_shop
    from shopmail.devtools.sendgrid_sink import running_sink
    from shopmail.devtools.sink_faults import Faults
    from tests.conftest import PRODUCTION_ENV
    from tests.process_kill import descendants
    from tests.test_attempts_exactly_once import (
        _eligible,
        _kill_between_sends,
        _kill_mid_request,
        _open_rows,
        dask_cluster,
    )
    from tests.test_shop_databases import SERVERS, _scratch_database

    os.environ.update(PRODUCTION_ENV)
    os.environ["SHOPMAIL_DATA_DIR"] = str(Path("/tmp") / f"shopmail-cluster-{os.getpid()}")
    rows = []
    with prefect_test_harness(server_startup_timeout=180):
        shop_gen = _scratch_database(SERVERS["postgresql"])
        shop = next(shop_gen)
        os.environ["SHOPMAIL_SHOP_DB_URL"] = shop
        get_settings.cache_clear()
        generate_demo_shop(shop, customers=CUSTOMERS, seed=5, today=AS_OF)
        scenarios = ("warm, no fault", "SIGKILL mid-request", "SIGKILL between sends", "cold, busy machine")
        for scenario in scenarios:
            state_gen = _scratch_database(SERVERS["postgresql"])
            os.environ["SHOPMAIL_STATE_DB_URL"] = next(state_gen)
            with running_sink() as sink:
                sink.store.set_faults(Faults(slow_ms=SLOW_S * 1000 / 2, answer_delay_ms=SLOW_S * 1000 / 2))
                os.environ.update(
                    SHOPMAIL_MAIL_PROVIDER="sendgrid",
                    SHOPMAIL_SENDGRID_HOST=sink.url,
                    SHOPMAIL_SENDGRID_API_KEY="SG.measure",
                    SHOPMAIL_SENDGRID_CONCURRENCY="1",
                    SHOPMAIL_CLAIM_LEASE_SECONDS="30",
                    SHOPMAIL_DOUBT_GRACE_MINUTES="0.5",
                    SHOPMAIL_TASK_RUNNER="dask",
                )
                os.environ.pop("SHOPMAIL_DASK_ADDRESS", None)
                get_settings.cache_clear()
                settings = get_settings()
                eligible = _eligible(settings)
                hogs = []
                if scenario.startswith("cold"):
                    hogs = [
                        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                        for _ in range(2)
                    ]
                started = time.monotonic()
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                with dask_cluster(env) as (address, procs):
                    os.environ["SHOPMAIL_DASK_ADDRESS"] = address
                    get_settings.cache_clear()
                    from flows.campaign import configured_campaign_flow

                    run = configured_campaign_flow()
                    reports: list = []
                    errors: list = []

                    def first_run(run=run, reports=reports, errors=errors) -> None:
                        try:
                            reports.append(run(campaign="sale", as_of=AS_OF, preapproved=True))
                        except Exception as exc:  # noqa: BLE001 - reported in the table
                            errors.append(f"{type(exc).__name__}: {exc}"[:200])

                    flow = threading.Thread(target=first_run)
                    flow.start()
                    workers = lambda procs=procs: [pid for p in procs[1:] for pid in descendants(p.pid)]  # noqa: E731
                    if scenario == "SIGKILL mid-request":
                        _kill_mid_request(sink, workers, timeout_s=600)
                    elif scenario == "SIGKILL between sends":
                        _kill_between_sends(sink, workers, timeout_s=600)
                    flow.join()
                    first_sent = reports[0].counts()["sent"] if reports else 0
                    for _ in range(8):
                        if not _open_rows(settings):
                            break
                        time.sleep(20)
                        try:
                            reports.append(run(campaign="sale", as_of=AS_OF, preapproved=True))
                        except Exception as exc:  # noqa: BLE001
                            errors.append(f"rerun: {type(exc).__name__}"[:200])
                for hog in hogs:
                    hog.kill()
                per = Counter(
                    int(p["custom_args"]["customer_id"])
                    for m in sink.store.messages
                    for p in m.payload["personalizations"]
                )
                rows.append(
                    {
                        "scenario": scenario,
                        "eligible": len(eligible),
                        "delivered": sum(per.values()),
                        "duplicates": sum(n - 1 for n in per.values() if n > 1),
                        "losses": len(eligible - set(per)),
                        "first run sent": first_sent,
                        "reports sent": sum(r.counts()["sent"] for r in reports),
                        "reruns": len(reports) - 1,
                        "open rows": _open_rows(settings),
                        "minutes": round((time.monotonic() - started) / 60, 1),
                        "errors": "; ".join(errors)[:150],
                    }
                )
                print(rows[-1], flush=True)
            next(state_gen, None)
        next(shop_gen, None)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
