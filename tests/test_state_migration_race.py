"""Two processes starting at once on a brand-new SQLite state DB: both migrate it without a race."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from shopmail.db import get_engine

SCRIPT = "import sys; from shopmail.state import state_db; state_db.upgrade(sys.argv[1])"


def test_concurrent_first_upgrades_of_a_new_sqlite_state_db_both_succeed(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    for attempt in range(3):  # the unlocked race failed most of the time ("table ... already exists")
        url = f"sqlite:///{tmp_path / f'state-{attempt}.db'}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", SCRIPT, url],
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
        assert "send_ledger" in inspect(get_engine(url)).get_table_names()
