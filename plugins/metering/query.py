"""Federation-wide usage totals: ask every region of the tenant's residency, unite the answers.

A query names a tenant and a period. The asking daemon sends a signed
``usage.query`` request to each region that may hold the tenant's usage
(the regions of its residency), answers its own share from its ledger, and
merges the partial totals meter by meter. A region that does not answer in
time is named in ``missing`` and the result is ``complete: false``: a total
is never quietly smaller than the truth.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from .aggregate import Partial, total
from .config import MeterKind

_PERIOD = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2}))?)?$")


class BadPeriod(ValueError):
    pass


def parse_period(text: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC for ``2026-10`` (a month), ``2026-10-04`` (a day) or ``2026-10-04T13`` (an hour)."""
    m = _PERIOD.match(text.strip())
    if not m:
        raise BadPeriod(f"period {text!r}: write YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH (UTC)")
    year, month, day, hour = (int(g) if g else None for g in m.groups())
    assert year is not None and month is not None
    try:
        if day is None:
            start = datetime(year, month, 1, tzinfo=UTC)
            return start, start + timedelta(days=monthrange(year, month)[1])
        if hour is None:
            start = datetime(year, month, day, tzinfo=UTC)
            return start, start + timedelta(days=1)
        start = datetime(year, month, day, hour, tzinfo=UTC)
        return start, start + timedelta(hours=1)
    except ValueError as exc:
        raise BadPeriod(f"period {text!r}: {exc}") from None


def partials_to_json(partials: Mapping[str, Partial], kinds: Mapping[str, MeterKind],
                     max_members: int) -> dict[str, Any]:
    """One region's answer; ``max_members`` UNIQUE_COUNT digests in all, so the reply fits one bus message."""
    out = {}
    budget = max_members
    for meter, part in sorted(partials.items(), key=lambda item: len(item[1].members or ())):
        sent = len(part.members or ())
        out[meter] = {**part.to_json(budget), "kind": kinds[meter].value if meter in kinds else None}
        if out[meter]["members"] is not None:
            budget -= sent
    return out


def partials_from_json(data: Mapping[str, Any]) -> tuple[dict[str, Partial], dict[str, MeterKind]]:
    partials, kinds = {}, {}
    for meter, raw in data.items():
        partials[meter] = Partial.from_json(raw)
        if raw.get("kind") in MeterKind.__members__:
            kinds[meter] = MeterKind(raw["kind"])
    return partials, kinds


Asker = Callable[[str], Awaitable[tuple[dict[str, Partial], dict[str, MeterKind]]]]
"""Returns one region's partials and its meters' kinds, or raises with the reason it is missing."""


async def gather(regions: list[str], ask: Asker, kinds: Mapping[str, MeterKind]) -> dict[str, Any]:
    """Ask every region at once; merge what came back and name what did not."""
    answers: dict[str, dict[str, Partial]] = {}
    errors: dict[str, str] = {}
    remote_kinds: dict[str, MeterKind] = {}

    async def one(region: str) -> None:
        try:
            answers[region], theirs = await ask(region)
            for meter, kind in theirs.items():
                remote_kinds.setdefault(meter, kind)
        except Exception as exc:
            errors[region] = str(exc) or type(exc).__name__

    async with anyio.create_task_group() as tg:
        for region in regions:
            tg.start_soon(one, region)

    meters: dict[str, Any] = {}
    names = set(kinds) | {m for parts in answers.values() for m in parts}
    for meter in sorted(names):
        kind = kinds.get(meter) or remote_kinds.get(meter) or MeterKind.SUM
        meters[meter] = total(kind, [parts[meter] for parts in answers.values() if meter in parts]).to_json()
    return {
        "regions": {r: ({"answered": True, "events": sum(p.aggregate.events for p in answers[r].values())}
                        if r in answers else {"answered": False, "error": errors.get(r, "no answer")})
                    for r in regions},
        "missing": sorted(errors),
        "complete": not errors,
        "meters": meters,
    }
