"""The builtin ``haproxy`` driver: HAProxy's Runtime API on its admin socket.

The backend holds two servers, the stable and the canary version; a step
sets their weights (``set weight backend/server N``) so that the canary gets
its percent, and readies or drains the canary (``set server ... state``).
The analysis reads ``show stat``: per server ``req_tot``, ``hrsp_5xx`` and
``rtime`` (HAProxy's mean response time of the last 1024 requests).

The admin socket needs ``stats socket PATH level admin`` in haproxy.cfg.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from meshd.config import StrictModel
from meshd.deploydriver import DriverError, DriverStats, ServerCounters, TrafficDriver, TrafficStep
from meshd.durations import Duration

M = TypeVar("M", bound=StrictModel)


class HAProxySettings(StrictModel):
    socket: Path
    backend: str = Field(min_length=1)
    stable: str = Field(default="stable", min_length=1)
    canary: str = Field(default="canary", min_length=1)
    timeout: Duration = Field(default=5.0, gt=0)


def validated(model: type[M], kind: str, config: dict[str, Any]) -> M:
    """``config`` as ``model``; a ValueError naming the driver and each bad setting."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or kind}: {e['msg']}" for e in exc.errors()]
        raise ValueError(f"{kind} driver: " + "; ".join(parts)) from None


class RuntimeAPI:
    """One command per connection (HAProxy's non-interactive mode): send, read to EOF."""

    def __init__(self, socket: Path, timeout: float):
        self.socket, self.timeout = socket, timeout

    async def command(self, line: str) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(str(self.socket))
                try:
                    writer.write(line.encode() + b"\n")
                    await writer.drain()
                    data = await reader.read()
                finally:
                    writer.close()
        except TimeoutError:
            raise DriverError(f"HAProxy admin socket {self.socket}: no answer to {line.split()[0]!r} "
                              f"within {self.timeout:g} s") from None
        except OSError as exc:
            raise DriverError(f"HAProxy admin socket {self.socket} is unreachable: "
                              f"{exc.strerror or exc}") from None
        return data.decode(errors="replace")


def parse_stat(text: str, backend: str) -> dict[str, dict[str, str]]:
    """``show stat`` CSV -> {server: {column: value}} for ``backend``'s servers."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise DriverError(f"HAProxy 'show stat' answered {text[:80]!r}, not its CSV")
    rows = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    return {row["svname"]: row for row in rows if row.get("pxname") == backend}


def _counters(row: dict[str, str]) -> ServerCounters:
    def number(name: str) -> int:
        value = row.get(name) or "0"
        return int(value) if value.isdigit() else 0

    rtime = row.get("rtime") or ""
    return ServerCounters(requests=number("req_tot") or number("stot"), errors_5xx=number("hrsp_5xx"),
                          response_ms=float(rtime) if rtime.isdigit() else None,
                          extra={"status": row.get("status", ""), "weight": row.get("weight", "")})


class HAProxyDriver(TrafficDriver):
    kind = "haproxy"

    def __init__(self, settings: HAProxySettings):
        self.settings = settings
        self.api = RuntimeAPI(settings.socket, settings.timeout)

    @classmethod
    def build(cls, config: dict[str, Any]) -> HAProxyDriver:
        return cls(validated(HAProxySettings, cls.kind, config))

    def _server(self, role: str) -> str:
        return f"{self.settings.backend}/{getattr(self.settings, role)}"

    async def _run(self, line: str, server: str) -> None:
        answer = (await self.api.command(line)).strip()
        if answer:  # HAProxy answers nothing when a set command worked
            raise DriverError(f"HAProxy {self.settings.socket}: {line!r} for server {server} failed: {answer}")

    async def set_weight(self, role: str, weight: int) -> None:
        await self._run(f"set weight {self._server(role)} {weight}", self._server(role))

    async def set_state(self, role: str, state: str) -> None:
        await self._run(f"set server {self._server(role)} state {state}", self._server(role))

    async def apply(self, step: TrafficStep) -> None:
        canary = max(0, min(100, step.canary_weight))
        if canary == 0:
            # Stable first: at no instant may both weights be 0 (HAProxy would answer 503).
            await self.set_weight("stable", 100)
            await self.set_weight("canary", 0)
            await self.set_state("canary", "drain")
            return
        await self.set_state("canary", "ready")
        await self.set_weight("canary", canary)
        await self.set_weight("stable", 100 - canary)

    async def stats(self) -> DriverStats:
        rows = parse_stat(await self.api.command("show stat"), self.settings.backend)
        out = {}
        for role in ("stable", "canary"):
            name = getattr(self.settings, role)
            if name not in rows:
                raise DriverError(f"HAProxy {self.settings.socket}: no server {self._server(role)} in 'show stat' "
                                  f"(servers of {self.settings.backend}: {', '.join(sorted(rows)) or 'none'})")
            out[role] = _counters(rows[name])
        return DriverStats(stable=out["stable"], canary=out["canary"])
