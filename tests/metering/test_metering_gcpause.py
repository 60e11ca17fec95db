"""The cycle collector's pause around metering batches, which may overlap in several threads."""

from __future__ import annotations

import gc
import threading

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
