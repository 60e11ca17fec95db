"""The builtin ``command`` driver: one command per step, the step as JSON on stdin.

For load balancers meshd has no driver for (a cloud LB's CLI, a service
mesh's API): the command gets ``{"service", "region", "version",
"canary_weight", "rollout_id", "step", "action"}`` and must exit 0 once the
weights are in place. It runs in a process group of its own; one that
outlives ``timeout`` is killed with that whole group, so a hung ``curl`` of
its own does not linger. It reports no traffic: use ``analysis.source:
probes`` with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from typing import Any

from pydantic import Field

from meshd.config import StrictModel
from meshd.deploydriver import DriverError, TrafficDriver, TrafficStep
from meshd.durations import Duration

from .haproxy import validated

STDERR_TAIL = 400


class CommandSettings(StrictModel):
    argv: list[str] = Field(min_length=1)
    timeout: Duration = Field(default=30.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)


class CommandDriver(TrafficDriver):
    kind = "command"

    def __init__(self, settings: CommandSettings):
        self.settings = settings

    @classmethod
    def build(cls, config: dict[str, Any]) -> CommandDriver:
        return cls(validated(CommandSettings, cls.kind, config))

    async def apply(self, step: TrafficStep) -> None:
        argv = self.settings.argv
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, **self.settings.env}, start_new_session=True)
        except OSError as exc:
            raise DriverError(f"command {argv[0]}: cannot start: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self.settings.timeout):
                _, err = await proc.communicate(json.dumps(step.as_dict()).encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise DriverError(f"command {argv[0]} was killed after {self.settings.timeout:g} s "
                              f"(step {step.step}, {step.canary_weight} %)") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip()[-STDERR_TAIL:]
            raise DriverError(f"command {argv[0]} exited {proc.returncode} (step {step.step}, "
                              f"{step.canary_weight} %): {tail or 'no output'}")
