"""The audit plugin's own checks, one module per area; the frameworks (etc/compliance/*.yaml) map them to controls."""

from __future__ import annotations

from meshd.auditcheck import AuditCheck

from . import access, continuity, host, keys, logging, residency, rest, transit

AREAS = (transit, rest, keys, access, residency, logging, continuity, host)


def builtin_checks() -> list[AuditCheck]:
    """Every check of every area, in report order."""
    return [check for area in AREAS for check in area.CHECKS]
