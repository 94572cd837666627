"""Dask preload: start the scheduler and every worker with it, so a cold cluster never stalls.

    dask scheduler --port 8786 --preload shopmail.dask_preload
    dask worker tcp://SCHEDULER:8786 --nthreads 1 --preload shopmail.dask_preload

Unpickling the first send task makes a process import Prefect, pandas and the project (seconds on a
busy machine); on the scheduler that happens inside its event loop, which then misses heartbeats
and drops the flow's client ("scheduler-connection-lost", 47 s measured). The preload imports them
when the process starts, before it serves anyone, and sets connection timeouts that survive a busy
machine (`TIMEOUTS`, also applied by the flow's own Dask client: flows/campaign.py).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from shopmail.run.dask_timeouts import TIMEOUTS, configure

logger = logging.getLogger(__name__)

# what unpickling a send task imports: the task module and what it reaches
MODULES = ("prefect", "pandas", "sqlalchemy", "httpx", "tasks.send", "flows.campaign")


def warm_imports() -> list[str]:
    """Import `MODULES` now; returns their names."""
    for name in MODULES:
        importlib.import_module(name)
    return list(MODULES)


def dask_setup(service: Any) -> None:
    """Dask calls this when a scheduler or worker starts with `--preload shopmail.dask_preload`."""
    configure()
    names = warm_imports()
    logger.info("shopmail preload: %s imported, timeouts %s", ", ".join(names), TIMEOUTS)
