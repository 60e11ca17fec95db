"""Pausing Python's cycle collector while a batch is validated and counted.

A batch allocates several containers per event (the decoded JSON objects,
the events, their dedup rows), all freed by reference counting, none part
of a cycle. Left on, the collector walks them, and the rest of the
daemon's heap with them, many times per batch: about a sixth of the
batch's CPU time (bench/README.md, "Metering, one worker"). Paused for
the length of a batch (well under a second), it collects whatever cycles
the other threads made meanwhile as soon as the last batch in progress ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_resume = False
"""Whether the collector was on when the first of the batches in progress paused it."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside; safe to nest and to enter from several threads at once."""
    global _active, _resume
    with _lock:
        if _active == 0:
            _resume = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _resume:
                gc.enable()
