"""A real ``meshd run`` process records SLI samples that survive SIGKILL and a restart."""

from __future__ import annotations

import re
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.testing import LocalFederation

from .webservice import ScheduledServer, scheduled_server

REGION = "eu-west-1"
INTERVAL_MS = 200


@pytest.fixture
def web() -> Iterator[ScheduledServer]:
    with scheduled_server() as server:
        yield server


def rows(fed: LocalFederation) -> list[tuple[int, int, float, int]]:
    path = fed.state_dir(REGION) / "sla" / "history.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT t_ms, span_ms, up_ms, checks FROM samples WHERE region=? AND source='probes' "
                          "ORDER BY t_ms", (REGION,)).fetchall()
    except sqlite3.OperationalError:  # the daemon has not created the table yet
        return []
    finally:
        db.close()


def written(fed: LocalFederation) -> int:
    status = fed.status(REGION) or {}
    return int(status.get("sla", {}).get("rows_written") or 0)


def test_history_survives_sigkill_and_restart(tmp_path: Path, web: ScheduledServer) -> None:
    config = {"sla": {"sample_interval": f"{INTERVAL_MS}ms"},
              "health": {"probes": [{"name": "web", "kind": "http", "url": web.url, "interval": "50ms",
                                     "timeout": "2s"}]}}
    with LocalFederation(tmp_path / "fed", regions=[REGION], config=config) as fed:
        fed.wait_for(lambda: written(fed) >= 10, what="ten samples written")
        acknowledged = written(fed)
        fed.kill(REGION)  # SIGKILL: no shutdown hook runs
        survived = rows(fed)
        # Every sample the daemon reported written is on disk; only the one being gathered is lost.
        assert len(survived) >= acknowledged
        starts = [r[0] for r in survived]
        assert all(b - a == INTERVAL_MS for a, b in zip(starts, starts[1:], strict=False)), starts
        assert all(r[1] == INTERVAL_MS and r[2] == INTERVAL_MS and r[3] >= 1 for r in survived)

        fed.start_daemon(REGION)
        fed.wait_for(lambda: written(fed) >= 5, what="samples after the restart")
        after = rows(fed)
        assert after[:len(survived)] == survived
        assert len(after) >= len(survived) + 5

        # SIGTERM: the interval under way is written too (with the time it covered), so every row is on disk.
        fed.signal(REGION, signal.SIGTERM)
        assert fed.procs[REGION].wait(timeout=30) == 0
        final = rows(fed)
        closed = re.findall(r"SLI history closed: (\d+) row", fed.log_text(REGION))
        assert closed and len(final) == len(survived) + int(closed[-1])
        assert all(0 < r[1] <= INTERVAL_MS for r in final)
