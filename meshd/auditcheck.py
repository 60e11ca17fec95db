"""The compliance audit's unit: a check a plugin offers, run in one region, and what it found.

Plugins offer checks through the ``meshd_audit_checks`` hook; the audit
plugin runs them (time-boxed, an exception recorded as ``error``), maps
them to framework controls (``etc/compliance/*.yaml``) and scores them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .daemon import Daemon


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


Status = Literal["pass", "fail", "not_applicable", "error"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "not_applicable", "error")


@dataclass(frozen=True)
class CheckResult:
    """What one check found in one region.

    ``detail`` is one English line and never holds a secret; ``evidence``
    holds the JSON-able facts the check looked at (config excerpts, command
    output, chain heads), every secret redacted. The audit plugin scrubs both
    again with the secrets registered in :mod:`meshd.logs` before they leave
    the region or reach a file.
    """

    status: Status
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r}: expected one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class AuditCheck:
    """A check a plugin offers: a stable dotted id ``<area>.<name>`` (``transit.nats_tls``), an English
    title (reports translate it through ``audit.check.<id with . as _>``), a severity, and ``run``,
    called in the region's daemon, returning a :class:`CheckResult` or an awaitable of one."""

    id: str
    title: str
    severity: Severity
    run: Callable[[Daemon], CheckResult | Awaitable[CheckResult]]
