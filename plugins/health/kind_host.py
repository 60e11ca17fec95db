"""Host resources through psutil: ``kind: cpu``, ``memory``, ``disk`` and ``load``.

Every psutil call runs in a worker thread (a ``disk_usage`` on a hung network
mount blocks in the kernel for as long as the mount hangs). Thresholds are
"higher is worse"; a value at or above ``critical`` is critical, at or above
``warning`` a warning.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any, Literal, NamedTuple

import psutil
from pydantic import Field

from meshd.config import RelPath

from .probes import Probe, ProbeResult, ProbeSettings, thresholded

Percent = Annotated[float, Field(gt=0, le=100)]

FIRST_SAMPLE = 0.25
"""Seconds the first CPU check measures over; later checks measure since the previous one."""


def _pct(value: float) -> str:
    return f"{value:.1f}%"


class CpuSettings(ProbeSettings):
    warning: Percent | None = 90.0
    critical: Percent | None = 98.0


class CpuTimes(NamedTuple):
    busy: float
    total: float


def cpu_times() -> CpuTimes:
    """Busy and total CPU seconds of the whole host, all cores together."""
    t = psutil.cpu_times()
    # As psutil.cpu_percent does: guest time is already counted in user/nice on Linux.
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return CpuTimes(total - idle, total)


def busy_percent(before: CpuTimes, after: CpuTimes) -> float:
    total = after.total - before.total
    if total <= 0:
        return 0.0
    return max(0.0, min(100.0, (after.busy - before.busy) / total * 100))


class CpuProbe(Probe):
    """Percent of all cores busy since the previous check (so over one interval).

    It keeps its own baseline instead of using ``psutil.cpu_percent``, whose
    baseline is process-wide: several daemons in one process would reset
    each other's measurement.
    """

    kind = "cpu"
    unit = "%"
    Settings = CpuSettings
    settings: CpuSettings
    _last: CpuTimes | None = None

    def _measure(self) -> tuple[CpuTimes, CpuTimes]:
        before = self._last
        if before is None:
            before = cpu_times()
            time.sleep(FIRST_SAMPLE)
        return before, cpu_times()

    async def check(self) -> ProbeResult:
        before, after = await self.run_blocking(self._measure)
        self._last = after
        return thresholded(busy_percent(before, after), self.settings.warning, self.settings.critical,
                           "CPU use", _pct)


class MemorySettings(ProbeSettings):
    warning: Percent | None = 90.0
    critical: Percent | None = 97.0


class MemoryProbe(Probe):
    """Percent of memory in use (psutil's ``virtual_memory().percent``: available memory counts as free)."""

    kind = "memory"
    unit = "%"
    Settings = MemorySettings
    settings: MemorySettings

    async def check(self) -> ProbeResult:
        vm = await self.run_blocking(psutil.virtual_memory)
        return thresholded(vm.percent, self.settings.warning, self.settings.critical, "memory use", _pct)


class DiskSettings(ProbeSettings):
    path: RelPath | None = None
    """A path on the filesystem to watch; the daemon's state directory if unset."""
    warning: Percent | None = 85.0
    critical: Percent | None = 95.0


class DiskProbe(Probe):
    """Percent of the filesystem holding ``path`` in use (as ``df`` shows it, root's reserve excluded)."""

    kind = "disk"
    unit = "%"
    Settings = DiskSettings
    settings: DiskSettings

    @property
    def path(self) -> str:
        return str(self.settings.path or self.context.state_dir)

    async def check(self) -> ProbeResult:
        try:
            usage = await self.run_blocking(psutil.disk_usage, self.path)
        except OSError as exc:
            return ProbeResult.critical(f"cannot read the filesystem of {self.path}: {exc.strerror or exc}")
        return thresholded(usage.percent, self.settings.warning, self.settings.critical,
                           f"disk use of {self.path}", _pct)

    def describe(self) -> dict[str, Any]:
        return {"target": self.path}


class LoadSettings(ProbeSettings):
    window: Literal[1, 5, 15] = 5
    """Which load average, in minutes."""
    warning: Annotated[float, Field(gt=0)] | None = 2.0
    critical: Annotated[float, Field(gt=0)] | None = 4.0


class LoadProbe(Probe):
    """The load average divided by the number of logical cores (1.0 = every core has one runnable task)."""

    kind = "load"
    Settings = LoadSettings
    settings: LoadSettings

    def _per_core(self) -> float:
        one, five, fifteen = os.getloadavg()
        avg = {1: one, 5: five, 15: fifteen}[self.settings.window]
        return avg / (psutil.cpu_count() or 1)

    async def check(self) -> ProbeResult:
        per_core = await self.run_blocking(self._per_core)
        return thresholded(per_core, self.settings.warning, self.settings.critical,
                           f"{self.settings.window}-minute load per core", lambda v: f"{v:.2f}")
