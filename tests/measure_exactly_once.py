"""Re-measure the doubt table (issue 11): 4,000-customer demo shop, `sale`, faults 5 % 429, 5 % 5xx,
3 % drops, 2 % accept-then-drop, SIGKILLs of `shopmail run` mid-send, reruns until done; counts at the
sink by shopmail_key. Not a test (about 7 minutes per scenario; results appended to
.shopmail/measure_exactly_once.jsonl): python -m tests.measure_exactly_once [scenario ...]"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
os.environ.update(GX_ANALYTICS_ENABLED="False", DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from config.settings import get_settings  # noqa: E402
from shopmail.campaigns import registry  # noqa: E402
from shopmail.db import get_engine  # noqa: E402
from tests.conftest import PRODUCTION_ENV  # noqa: E402
from tests.test_crash_doubt import Scenario, run_scenario  # noqa: E402

FAULTS = {
    "rate_429": 0.05,
    "rate_500": 0.03,
    "rate_503": 0.02,
    "rate_drop": 0.03,
    "rate_accept_drop": 0.02,
    "retry_after_s": 1,
    "slow_ms": 30,
    "seed": 21,
}
COMMON = dict(customers=4000, lease_s=5, grace_min=0.5, tasks_at_once=2, batch=50, kills=3, faults=FAULTS)
SCENARIOS = {
    "activity_instant": Scenario(**COMMON, activity=True, seed=31),
    "activity_6_per_min_lag_10s": Scenario(
        **COMMON, activity=True, activity_rate_per_min=6, activity_lag_s=10, seed=32
    ),
    "activity_off_webhook_off": Scenario(**COMMON, seed=33),
    "activity_off_webhook_on": Scenario(**COMMON, webhook=True, seed=34),
}


def settings_in(folder: Path):
    for key in [k for k in os.environ if k.startswith("SHOPMAIL_")]:
        del os.environ[key]
    (folder / "data").mkdir()
    os.environ.update(PRODUCTION_ENV)
    os.environ["SHOPMAIL_DATA_DIR"] = str(folder / "data")
    os.environ["SHOPMAIL_MAIL_PROVIDER"] = "outbox"
    get_settings.cache_clear()
    get_engine.cache_clear()
    registry.cache_clear()
    return get_settings()


def main(names: list[str]) -> None:
    with prefect_test_harness(server_startup_timeout=120):
        for name in names or list(SCENARIOS):
            sc = SCENARIOS[name]
            with tempfile.TemporaryDirectory(prefix=f"measure-{name}-") as tmp:
                started = time.monotonic()
                out = run_scenario(settings_in(Path(tmp)), sc)
                row = {
                    "scenario": name,
                    "mails": out.mails,
                    "duplicates": out.duplicates,
                    "losses": out.losses,
                    "kills": out.kills,
                    "reruns": out.reruns,
                    "doubt_keys": len(out.doubt_keys),
                    "bound_no_proof": out.bound(sc),
                    "max_copies": max(out.keys.values()),
                    "faults": out.stats["faults"],
                    "seconds": round(time.monotonic() - started),
                }
                print(json.dumps(row), flush=True)
                (ROOT / ".shopmail").mkdir(exist_ok=True)
                with open(ROOT / ".shopmail" / "measure_exactly_once.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
