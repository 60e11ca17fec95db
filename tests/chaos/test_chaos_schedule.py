"""One short seeded chaos schedule on real processes: 7 daemons, a 3-node NATS cluster, an R3 bucket.

Faults (SIGKILL, SIGSTOP/SIGCONT, daemons cut off the bus by their TCP
proxies, NATS node restarts) come from the seed; the checks read the KV
bucket and every daemon's audit log afterwards. ``bench/chaos.py --runs N
--seed S`` runs many of these; this one keeps CI under two minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaos_runner import SEVEN, make_schedule, run_schedule

SEED = 20261126
DURATION = 40.0

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def test_the_schedule_is_reproducible_from_its_seed() -> None:
    assert make_schedule(SEED, SEVEN, DURATION) == make_schedule(SEED, SEVEN, DURATION)
    assert make_schedule(SEED, SEVEN, DURATION) != make_schedule(SEED + 1, SEVEN, DURATION)
    kinds = {f.kind for seed in range(20) for step in make_schedule(seed, SEVEN, DURATION) for f in step.faults}
    assert kinds == {"kill", "pause", "cut", "nats_restart"}


@pytest.mark.timeout(240)
def test_a_seeded_chaos_schedule_keeps_every_invariant(tmp_path: Path) -> None:
    report = run_schedule(tmp_path / "chaos", SEED, duration=DURATION, detect_budget=20.0)
    summary = report.summary()
    assert report.ok, json.dumps(summary, indent=2)
    # The run exercised what it claims to check.
    assert summary["decisions"] >= 1 and report.liveness_checked >= 1
    assert report.votes >= 4 and report.probes > 0
    [sample] = report.samples
    assert sample.committed is not None and sample.applied_everywhere is not None
    assert sample.applied_everywhere >= sample.committed > 0
