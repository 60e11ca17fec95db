"""The probe contract: what a probe kind is, what one check returns.

Plugin authors who add probe kinds through ``meshd_probe_kinds`` import this
module (``from meshd_plugins.health.probes import Probe, ProbeResult,
ProbeSettings``) and nothing else from the health plugin.

A probe kind is a :class:`Probe` subclass with a ``Settings`` model (a
:class:`ProbeSettings` subclass holding the kind's own fields) and an async
:meth:`Probe.check`. The health plugin builds one instance per configured
probe, calls ``check()`` every ``interval`` under a deadline of ``timeout``,
and runs the result through hysteresis before the region's verdict changes.
"""

from __future__ import annotations

import abc
import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import anyio
from pydantic import Field

import meshd

T = TypeVar("T")

PROBE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""Probe names: used as a metric label, an alert label and a reason gossiped to peers."""


class Level(IntEnum):
    """How bad one result (or a probe's settled state) is; ordered, so ``max`` is the worst."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ProbeResult:
    """What one check found.

    ``value`` is the measured number in the kind's unit (seconds of latency,
    percent, exit code...), shown in ``/status`` and exported as a metric;
    ``error`` says in one English line why the result is not ok (it goes to
    logs and ``/status``, so it must never hold a secret).
    """

    level: Level
    value: float | None = None
    error: str | None = None

    @classmethod
    def ok(cls, value: float | None = None) -> ProbeResult:
        return cls(Level.OK, value)

    @classmethod
    def warning(cls, error: str, value: float | None = None) -> ProbeResult:
        return cls(Level.WARNING, value, error)

    @classmethod
    def critical(cls, error: str, value: float | None = None) -> ProbeResult:
        return cls(Level.CRITICAL, value, error)


def threshold_level(value: float, warning: float | None, critical: float | None) -> Level:
    """The level of ``value`` against "higher is worse" thresholds (either may be None)."""
    if critical is not None and value >= critical:
        return Level.CRITICAL
    if warning is not None and value >= warning:
        return Level.WARNING
    return Level.OK


def thresholded(value: float, warning: float | None, critical: float | None, what: str,
                fmt: Callable[[float], str] = lambda v: f"{v:g}") -> ProbeResult:
    """A result for ``value`` against its thresholds, with an error naming the one crossed."""
    if math.isnan(value):
        return ProbeResult.critical(f"{what} could not be measured")
    level = threshold_level(value, warning, critical)
    if level is Level.OK:
        return ProbeResult.ok(value)
    limit = critical if level is Level.CRITICAL else warning
    assert limit is not None
    return ProbeResult(level, value, f"{what} {fmt(value)} is at or above the {level.label} threshold {fmt(limit)}")


def os_error_text(exc: OSError) -> str:
    """The useful part of a socket error: "Connection refused", not "[Errno 111] Connect call failed (...)".

    anyio wraps the real connect error, and asyncio words it after the
    address; the errno's own text reads best in a one-line probe error.
    """
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    if isinstance(cause, TimeoutError):
        return "timed out"
    if cause.errno and cause.errno > 0:  # (name resolution errors have negative codes)
        return os.strerror(cause.errno)
    return cause.strerror or str(cause) or type(cause).__name__


PositiveDuration = Annotated[meshd.Duration, Field(gt=0)]


class ProbeSettings(meshd.StrictModel):
    """Settings every probe has; a kind's ``Settings`` subclass adds its own fields.

    Every field of a subclass needs a default or is required in config;
    pydantic validates it, and errors are reported as
    ``health.probes[<i>].<field>`` with the file and line.
    """

    name: Annotated[str, Field(pattern=PROBE_NAME_PATTERN)]
    kind: str
    interval: PositiveDuration = 10.0
    """Time between the starts of two checks."""
    timeout: PositiveDuration = 5.0
    """Deadline of one check; a check that has not answered by then is a critical failure."""
    severity: Literal["warning", "critical"] = "warning"
    """How much this probe matters: the verdict rules and the ProbeFailing alert severity use it."""
    fail_after: int = Field(default=3, ge=1, le=1000)
    """Consecutive failing results before the probe's state becomes failing."""
    recover_after: int = Field(default=2, ge=1, le=1000)
    """Consecutive better results before a failing probe recovers."""
    runbook_url: str | None = None
    """Goes into this probe's ProbeFailing alert, for the person paged."""


S = TypeVar("S", bound=ProbeSettings)


class Probe(abc.ABC):
    """One configured probe of one kind. Subclass it to add a probe kind.

    Contract:

    * ``kind`` is the name used in config (``kind: tcp``), ``Settings`` the
      pydantic model of a probe of this kind (a :class:`ProbeSettings`
      subclass; the base fields are always there), ``unit`` the unit of the
      values it measures.
    * ``__init__(settings, context)`` must be cheap and do no I/O; it may
      raise ``ValueError`` for settings that pass the model but cannot work.
    * :meth:`check` makes one measurement and returns a :class:`ProbeResult`.
      It must not block the event loop: blocking work (psutil, sockets
      without anyio, DNS through the stdlib) goes through
      :meth:`run_blocking`. The health plugin cancels ``check`` at
      ``settings.timeout``; a check that raises, times out or returns
      something other than a ``ProbeResult`` counts as a critical result,
      and the daemon carries on.
    * Checks of one probe never overlap: the next one starts ``interval``
      after the previous started, or as soon as it ended if it ran longer.
    * :meth:`close` releases resources when the probe is removed (reload,
      shutdown); the default does nothing.
    """

    kind: ClassVar[str] = ""
    Settings: ClassVar[type[ProbeSettings]] = ProbeSettings
    unit: ClassVar[str] = ""
    """Unit of ``ProbeResult.value``: ``"s"`` (seconds), ``"%"``, or ``""`` for a plain number."""

    def __init__(self, settings: ProbeSettings, context: ProbeContext):
        self.settings = settings
        self.context = context

    @property
    def name(self) -> str:
        return self.settings.name

    @abc.abstractmethod
    async def check(self) -> ProbeResult:
        """Make one measurement; see the class docstring for the rules."""

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in a worker thread, abandoned (not waited for) if the check is cancelled.

        The worker threads come from a small pool of the health plugin, so
        a probe stuck in the kernel (a hung NFS mount) cannot starve the
        rest of the daemon; that probe's next check is refused while the
        stuck call is still running.
        """
        return await self.context.run_blocking(functools.partial(fn, *args), owner=self.name)

    def describe(self) -> dict[str, Any]:
        """Extra, secret-free facts about the probe for ``/status`` (its target)."""
        return {}

    async def close(self) -> None:  # noqa: B027 - optional: most probes hold nothing
        """Release what the probe holds; called once when it is removed."""


class ProbeContext:
    """What a probe may use of its daemon, without reaching into it."""

    def __init__(self, *, region: str, state_dir: Any, secret: Callable[[str], str],
                 limiter: anyio.CapacityLimiter | None = None):
        self.region = region
        self.state_dir = state_dir
        self.secret = secret
        """The plaintext of a config secret (``!encrypted`` values are decrypted); never log it."""
        self.limiter = limiter or anyio.CapacityLimiter(4)
        self._busy: set[str] = set()

    async def run_blocking(self, fn: Callable[[], T], *, owner: str) -> T:
        if owner in self._busy:
            raise ProbeStuck(f"the previous check of {owner} is still stuck in a blocking call")
        self._busy.add(owner)
        done = False

        def call() -> T:
            nonlocal done
            try:
                return fn()
            finally:
                done = True
                self._busy.discard(owner)

        try:
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=self.limiter)
        finally:
            if done:
                self._busy.discard(owner)


class ProbeStuck(RuntimeError):
    """A probe's previous blocking call has not returned yet; the new check is not started."""
