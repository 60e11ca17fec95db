"""``kind: tcp``: can a TCP connection be opened, and how fast."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
from pydantic import Field

import meshd

from .probes import Probe, ProbeResult, ProbeSettings, os_error_text, thresholded


class TcpSettings(ProbeSettings):
    host: Annotated[str, Field(min_length=1)]
    port: int = Field(ge=1, le=65535)
    latency_warning: meshd.Duration | None = None
    """Connect time at or above which the result is a warning."""
    latency_critical: meshd.Duration | None = None
    """Connect time at or above which the result is critical."""


class TcpProbe(Probe):
    """Opens a TCP connection to ``host:port`` and closes it at once; refused or timed out is critical."""

    kind = "tcp"
    unit = "s"
    Settings = TcpSettings
    settings: TcpSettings

    async def check(self) -> ProbeResult:
        s = self.settings
        began = time.perf_counter()
        try:
            stream = await anyio.connect_tcp(s.host, s.port)
        except OSError as exc:
            return ProbeResult.critical(f"cannot connect to {s.host}:{s.port}: {os_error_text(exc)}")
        latency = time.perf_counter() - began
        await stream.aclose()
        return thresholded(latency, s.latency_warning, s.latency_critical, "connect time",
                           lambda v: f"{v * 1000:.0f}ms")

    def describe(self) -> dict[str, Any]:
        return {"target": f"{self.settings.host}:{self.settings.port}"}
