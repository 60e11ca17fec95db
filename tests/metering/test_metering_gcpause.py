"""The cycle collector's pause around metering batches, which may overlap in several threads."""

from __future__ import annotations

import gc
import threading

import pytest

from meshd_plugins.metering.gcpause import collector_paused


def test_the_collector_resumes_only_when_the_last_overlapping_batch_ends() -> None:
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def batch() -> None:
        with collector_paused():
            inside.set()
            release.wait(30)

    other = threading.Thread(target=batch)
    other.start()
    try:
        assert inside.wait(30)
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the other thread's batch is still running
    finally:
        release.set()
        other.join(30)
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_resumes_when_a_batch_raises() -> None:
    try:
        with collector_paused():
            raise ValueError("a ledger error")
    except ValueError:
        pass
    assert gc.isenabled()


def test_cycles_made_during_a_pause_that_never_ends_are_still_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Overlapping batches (a backlog) keep the pause on; past MAX_PAUSE a batch's start collects
    # the young generations, so cycles other threads make meanwhile do not pile up.
    import weakref

    from meshd_plugins.metering import gcpause

    class Node:
        pass

    monkeypatch.setattr(gcpause, "MAX_PAUSE", 0.0)
    with collector_paused():
        cycle = Node()
        cycle.me = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None  # only the cycle collector can free it, and it is paused
        with collector_paused():  # the next batch starts while this one runs
            assert gone() is None
            assert not gc.isenabled()
    assert gc.isenabled()
