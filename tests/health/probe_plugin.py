"""A third-party probe kind, registered through ``meshd_probe_kinds`` as a plugin author would.

``kind: flag`` reads a flag a test sets (through :data:`FLAGS`, keyed by the
probe's ``flag`` setting): ``ok``, ``warning``, ``critical``, ``raise`` (the
check raises), ``hang`` (it never answers) or ``garbage`` (it returns
something that is not a ProbeResult); or plays a script of such values
(:data:`SCRIPTS`), one per check.
"""

from __future__ import annotations

from typing import Any

import anyio

from meshd import hookimpl
from meshd_plugins.health.probes import Level, Probe, ProbeResult, ProbeSettings

FLAGS: dict[str, str] = {}
"""Flag values by name; tests use unique names so that tests never see each other's flags."""
SCRIPTS: dict[str, list[str]] = {}
"""Flag values to play one per check (then ``ok``), for tests that need an exact sequence of results."""


class FlagSettings(ProbeSettings):
    flag: str


class FlagProbe(Probe):
    kind = "flag"
    Settings = FlagSettings
    settings: FlagSettings

    def __init__(self, settings: ProbeSettings, context: Any):
        super().__init__(settings, context)
        if self.settings.flag.startswith("refuse"):
            raise ValueError("flags named refuse* cannot be probed")
        self.closed = False

    async def check(self) -> ProbeResult:
        script = SCRIPTS.get(self.settings.flag)
        value = (script.pop(0) if script else "ok") if script is not None else FLAGS.get(self.settings.flag, "ok")
        if value == "raise":
            raise RuntimeError("the flag probe broke")
        if value == "hang":
            await anyio.sleep_forever()
        if value == "garbage":
            return "not a result"  # type: ignore[return-value]
        level = Level[value.upper()]
        return ProbeResult(level, float(level), None if level is Level.OK else f"flag says {value}")

    async def close(self) -> None:
        self.closed = True


class FlagProbePlugin:
    @hookimpl
    def meshd_probe_kinds(self) -> dict[str, type]:
        return {"flag": FlagProbe}
