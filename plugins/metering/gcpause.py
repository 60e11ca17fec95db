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
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_resume = False
"""Whether the collector was on when the first of the batches in progress paused it."""
_since = 0.0
"""Monotonic time of the pause's start, or of the last young collection made during it."""
MAX_PAUSE = 1.0
"""During a backlog one batch starts before the last one ends, so the pause may never end by itself:
past this many seconds the young generations are collected by hand, which bounds what cycles
the other threads make can pile up."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside; safe to nest and to enter from several threads at once."""
    global _active, _resume, _since
    with _lock:
        now = time.monotonic()
        if _active == 0:
            _resume = gc.isenabled()
            gc.disable()
            _since = now
        elif _resume and now - _since > MAX_PAUSE:
            gc.collect(1)
            _since = now
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _resume:
                gc.enable()
