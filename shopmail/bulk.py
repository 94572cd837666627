"""Bulk work on many small objects: Python's cyclic garbage collector paused while it runs.

Reading a million shop rows or turning them into a million dicts allocates millions of container
objects that hold no reference cycles; the collector still walks the ever larger heap again and
again while they are made (1M customers: 661,252 rows made into dicts in 5.0 s, 1.8 s paused).
Reference counting frees everything as usual while paused; cycles wait for the next collection.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # pauses in progress (threads of one run may overlap)
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block; it resumes when the last overlapping pause ends
    (only if it was running when the first began)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
