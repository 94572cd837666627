"""Machine time from an empty database to the first dry run, per platform kit (issue 25's closing note).

For each kit: a fresh MariaDB database in the server's default collation, the platform's real DDL, the
small shop of tests/kit_shops.py, the kit (views.sql + coupon_bridge.sql), its settings.env and a
production shop profile, then what a shop's engineer runs: `shopmail check-shop` (which dry-runs every
enabled campaign) and the first `shopmail run <campaign> --dry-run` (a fresh process starting its own
temporary Prefect server, as on a machine without one). Each command is a subprocess, timed from the
outside. Not a test: `python -m tests.measure_kit_setup` from the project root (KITS narrows it down).
The time a person spends reading the docs and choosing the settings is not in these numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from sqlalchemy import create_engine  # noqa: E402

from shopmail.shop.kits import apply_kit, kit_settings  # noqa: E402
from tests.conftest import PRODUCTION_ENV  # noqa: E402
from tests.kit_shops import (  # noqa: E402  # noqa: E402
    AS_OF,
    fill_bitrix,
    fill_opencart,
    fill_woocommerce,
    load_platform,
    mariadb_database,
)

FILL = {"opencart3": fill_opencart, "woocommerce_hpos": fill_woocommerce, "bitrix": fill_bitrix}
SHOP_ENV = {
    "opencart3": {"SHOPMAIL_TIMEZONE": "Europe/London", "SHOPMAIL_CURRENCY": "GBP"},
    "woocommerce_hpos": {"SHOPMAIL_TIMEZONE": "Europe/London", "SHOPMAIL_CURRENCY": "GBP"},
    "bitrix": {},
}
FIRST_DRY_RUN = "order_delivered"


def _timed(step: dict, name: str, action) -> object:
    started = time.monotonic()
    result = action()
    step[name] = round(time.monotonic() - started, 2)
    return result


def _shopmail(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shopmail.cli", *args], env=env, capture_output=True, text=True, check=False
    )


def measure(kit: str) -> dict:
    steps: dict[str, object] = {"kit": kit}
    started = time.monotonic()
    with mariadb_database("utf8mb4_general_ci") as url:
        engine = create_engine(url)
        _timed(steps, "platform DDL", lambda: load_platform(engine, kit, "utf8mb4_general_ci"))
        _timed(steps, "kit install", lambda: apply_kit(engine, kit))
        _timed(steps, "shop data", lambda: FILL[kit](engine))
        engine.dispose()
        data = Path(tempfile.mkdtemp(prefix=f"shopmail-kit-{kit}-"))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SHOPMAIL_", "PREFECT_"))},
            **PRODUCTION_ENV,
            **kit_settings(kit),
            **SHOP_ENV[kit],
            "SHOPMAIL_SHOP_DB_URL": url,
            "SHOPMAIL_DATA_DIR": str(data / "data"),
            "PREFECT_HOME": str(data / "prefect"),
            "GX_ANALYTICS_ENABLED": "False",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # a shared 2-core machine: the temporary server may need longer than Prefect's 20 s to start
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        }
        checked = _timed(
            steps,
            "check-shop",
            lambda: _shopmail(["check-shop", "--format", "json", "--as-of", str(AS_OF)], env),
        )
        result = json.loads(checked.stdout)
        steps["check-shop exit"] = checked.returncode
        steps["campaigns dry-run by check-shop"] = sum(1 for c in result["campaigns"] if c["dry_run"])
        steps["slowest campaign (s)"] = max((c["seconds"] or 0) for c in result["campaigns"])
        dry = _timed(
            steps,
            "first dry run",
            lambda: _shopmail(["run", FIRST_DRY_RUN, "--dry-run", "--as-of", str(AS_OF)], env),
        )
        steps["first dry run exit"] = dry.returncode
        if dry.returncode:
            lines = (dry.stdout + dry.stderr).splitlines()
            steps["first dry run error"] = [line for line in lines if "rror" in line or "fail" in line][:8]
        steps["empty database to first dry run"] = round(time.monotonic() - started, 1)
    return steps


def main() -> None:
    kits = [k for k in os.environ.get("KITS", ",".join(FILL)).split(",") if k]
    for kit in kits:
        print(json.dumps(measure(kit), ensure_ascii=False))


if __name__ == "__main__":
    main()
