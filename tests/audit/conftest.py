"""Fixtures of the audit check tests: in-process daemons on a real nats-server, and running a check."""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from meshd.auditcheck import AuditCheck, CheckResult
from meshd.testing import running_daemons, write_federation
from meshd_plugins.audit.checks import builtin_checks

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]


def check(check_id: str) -> AuditCheck:
    return next(c for c in builtin_checks() if c.id == check_id)


async def run_check(check_id: str, daemon: Any) -> CheckResult:
    """Run one check as the audit plugin would, and check what every result must be: one line, JSON evidence."""
    result = check(check_id).run(daemon)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, CheckResult)
    assert "\n" not in result.detail
    json.dumps(result.evidence)
    return result


def without_secrets(result: CheckResult, *secrets: str) -> bool:
    text = result.detail + json.dumps(result.evidence)
    return not any(s and s in text for s in secrets)


@contextlib.asynccontextmanager
async def daemons(tmp_path: Path, nats_url: str, *, regions: Sequence[str] = REGIONS,
                  start: Sequence[str] = ("eu-west-1",), patch: dict[str, Any] | None = None,
                  blocked: Sequence[str] = ()) -> AsyncIterator[dict[str, Any]]:
    """In-process daemons of ``start`` in a federation of ``regions`` (the others are down)."""
    configs = write_federation(tmp_path, list(regions), nats_url, patch=patch)
    async with running_daemons({r: configs[r] for r in start}, blocked=blocked) as running:
        yield running


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
