"""``kind: command``: a command's exit code, Nagios-plugin style.

Exit 0 is ok, the codes in ``warning_exit_codes`` (default 1) a warning, any
other code critical (so existing Nagios/Icinga check scripts work as they
are). The command runs without a shell, in its own process group and session,
with stdin closed. At the deadline, or when the check is cancelled, the whole
process group is killed with SIGKILL, so a hung script and the children it
started are all gone; a check that leaves background processes behind has
them killed too.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Annotated, Any

import anyio
from anyio.abc import Process
from pydantic import AfterValidator, Field

from meshd.config import RelPath, Secret

from .probes import Level, Probe, ProbeResult, ProbeSettings

OUTPUT_LIMIT = 4096
"""Bytes of output kept for the result's message; the rest is read and dropped."""
REAP_GRACE = 0.5
"""Seconds the output may keep flowing after the command exited (a child holding the pipe is then killed)."""


def _argv(value: str | list[str]) -> list[str]:
    argv = shlex.split(value) if isinstance(value, str) else list(value)
    if not argv or not argv[0]:
        raise ValueError("the command is empty")
    return argv


class CommandSettings(ProbeSettings):
    command: Annotated[str | list[str], AfterValidator(_argv)]
    """Program and arguments, as a list or one string split like a shell would (no shell runs)."""
    warning_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(default_factory=lambda: [1])
    cwd: RelPath | None = None
    env: dict[str, Secret] = Field(default_factory=dict)
    """Extra environment variables; values may be ``!encrypted``."""


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def first_line(output: bytes) -> str:
    for line in output.decode(errors="replace").splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


class CommandProbe(Probe):
    """Runs ``command`` and maps its exit code to a level; a command still running at the timeout is killed."""

    kind = "command"
    Settings = CommandSettings
    settings: CommandSettings

    async def check(self) -> ProbeResult:
        s = self.settings
        argv: list[str] = s.command  # type: ignore[assignment]  # normalized by the validator
        env = {**os.environ, **{k: self.context.secret(v) for k, v in s.env.items()}} if s.env else None
        try:
            process = await anyio.open_process(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                cwd=s.cwd, env=env, start_new_session=True)
        except OSError as exc:
            return ProbeResult.critical(f"cannot run {Path(argv[0]).name}: {exc.strerror or exc}")
        output = bytearray()
        eof = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._drain, process, output, eof)
                code = await process.wait()
                with anyio.move_on_after(REAP_GRACE):
                    await eof.wait()
                tg.cancel_scope.cancel()
        finally:
            # Runs on success, on error and on cancellation at the deadline:
            # nothing the command started may outlive the check.
            with anyio.CancelScope(shield=True):
                _kill_group(process.pid)
                with anyio.move_on_after(2):
                    await process.aclose()
        return self.result(code, bytes(output))

    @staticmethod
    async def _drain(process: Process, output: bytearray, eof: anyio.Event) -> None:
        # Keep reading past the limit so a chatty command never blocks on a full pipe.
        assert process.stdout is not None
        try:
            async for chunk in process.stdout:
                if len(output) < OUTPUT_LIMIT:
                    output.extend(chunk[: OUTPUT_LIMIT - len(output)])
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        eof.set()

    def result(self, code: int, output: bytes) -> ProbeResult:
        name = Path(self.settings.command[0]).name
        said = first_line(output)
        detail = f": {said}" if said else ""
        if code == 0:
            return ProbeResult.ok(0)
        if code < 0:
            return ProbeResult.critical(f"{name} was killed by signal {-code}{detail}", code)
        level = Level.WARNING if code in self.settings.warning_exit_codes else Level.CRITICAL
        return ProbeResult(level, code, f"{name} exited with {code}{detail}")

    def describe(self) -> dict[str, Any]:
        return {"target": Path(self.settings.command[0]).name}
