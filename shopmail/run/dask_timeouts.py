"""Dask connection timeouts that survive a busy machine (the scheduler, workers and the flow's client)."""

from __future__ import annotations

# distributed's defaults (connect 30 s, tcp 30 s) drop connections on a loaded 2-core machine
TIMEOUTS = {
    "distributed.comm.timeouts.connect": "120s",
    "distributed.comm.timeouts.tcp": "300s",
    "distributed.scheduler.worker-ttl": "600s",
}


def configure() -> None:
    """Set `TIMEOUTS` in this process's Dask configuration."""
    import dask

    dask.config.set(TIMEOUTS)
