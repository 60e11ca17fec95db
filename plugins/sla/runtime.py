"""The sla plugin inside a daemon: the recorder's interval clock and the history file."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .config import SECTION, SlaConfig
from .recorder import Recorder
from .store import SampleStore

DOWNSAMPLE_EVERY_S = 3600.0


class Runtime:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.settings: SlaConfig = daemon.plugin_config(SECTION)
        self.log = logging.getLogger(f"meshd.{daemon.region}.sla")
        self.interval_ms = max(1, round(self.settings.sample_interval * 1000))
        self.recorder = Recorder(daemon.region, self.interval_ms, self.settings.probes)
        self.store: SampleStore | None = None
        self.current_ms = self.recorder.bucket(time.time())
        self.written = 0
        m = daemon.metrics
        self.m_samples = m.counter("sla_samples_written_total", "SLI history rows written, by source", ["source"])
        self.m_errors = m.counter("sla_store_errors_total", "SLI history writes that failed")

    @property
    def path(self) -> Path:
        return self.settings.history or self.daemon.state_dir / "sla" / "history.sqlite"

    async def open(self) -> None:
        self.store = await anyio.to_thread.run_sync(SampleStore, self.path)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Close an interval at each boundary of the wall clock, write its rows, fold old rows hourly."""
        task_status.started()
        next_fold = 0.0
        while True:
            boundary_ms = self.current_ms + self.interval_ms
            # Sleeping to the wall-clock boundary keeps every region's rows aligned on the same starts.
            await anyio.sleep(max(0.0, boundary_ms / 1000 - time.time()))
            await self.flush(boundary_ms)
            if anyio.current_time() >= next_fold:
                next_fold = anyio.current_time() + DOWNSAMPLE_EVERY_S
                await self.fold()

    async def flush(self, boundary_ms: int) -> None:
        start, self.current_ms = self.current_ms, boundary_ms
        rows = self.recorder.close_interval(start)
        if boundary_ms - start != self.interval_ms:
            rows = [r.__class__(r.region, r.t_ms, boundary_ms - start, r.up_ms * (boundary_ms - start) / r.span_ms,
                                r.checks, r.hist, r.source) for r in rows]
        if not rows or self.store is None:
            return
        try:
            await anyio.to_thread.run_sync(self.store.add, rows)
        except Exception as exc:  # a full disk must not stop the recording of later samples
            self.m_errors.inc()
            self.log.error("writing SLI samples failed: %s: %s", type(exc).__name__, exc)
            return
        self.written += len(rows)
        for r in rows:
            self.m_samples.labels(r.source).inc()

    async def fold(self) -> None:
        if self.store is None:
            return
        now_ms = int(time.time() * 1000)
        try:
            await anyio.to_thread.run_sync(self.store.downsample, now_ms - int(self.settings.full_resolution * 1000),
                                           now_ms - int(self.settings.retention * 1000))
        except Exception as exc:
            self.m_errors.inc()
            self.log.error("downsampling the SLI history failed: %s: %s", type(exc).__name__, exc)

    async def stop(self) -> None:
        """SIGTERM: the interval under way is written with the time it covered, so a clean stop loses nothing."""
        now_ms = int(time.time() * 1000)
        if now_ms > self.current_ms:
            await self.flush(now_ms)
        self.log.info("SLI history closed: %d row(s) written by this process", self.written)
        if self.store is not None:
            self.store.close()
            self.store = None

    def status(self) -> dict[str, Any]:
        return {"history": str(self.path), "sample_interval_s": self.interval_ms / 1000,
                "rows_written": self.written, "dead_peers": sorted(self.recorder.dead),
                "failed_over": dict(self.recorder.failed_over)}
