"""Periods and the federation-wide merge: a missing region is named, never quietly left out."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meshd_plugins.metering.aggregate import Aggregate, Partial
from meshd_plugins.metering.config import MeterKind
from meshd_plugins.metering.query import BadPeriod, gather, parse_period

pytestmark = pytest.mark.anyio
UTC = UTC


@pytest.mark.parametrize("text, start, end", [
    ("2026-10", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("2028-02-29", datetime(2028, 2, 29, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
    ("2026-10-04T13", datetime(2026, 10, 4, 13, tzinfo=UTC), datetime(2026, 10, 4, 14, tzinfo=UTC)),
])
def test_periods(text: str, start: datetime, end: datetime) -> None:
    assert parse_period(text) == (start, end)


@pytest.mark.parametrize("text", ["2026", "2026-13", "2026-02-30", "October", "2026-10-04T25", ""])
def test_bad_periods_say_what_to_write(text: str) -> None:
    with pytest.raises(BadPeriod, match="YYYY-MM|period"):
        parse_period(text)


async def test_a_region_that_does_not_answer_is_named_and_the_result_marked_incomplete() -> None:
    def part(total: str, events: int) -> Partial:
        return Partial(Aggregate(events=events, sum=Decimal(total)))

    async def ask(region: str) -> tuple[dict[str, Partial], dict[str, MeterKind]]:
        if region == "eu-central-1":
            raise TimeoutError("no answer within 3s")
        return {"api_calls": part("2.5" if region == "eu-west-1" else "1", 2)}, {}

    result = await gather(["eu-west-1", "eu-central-1", "eu-south-1"], ask, {"api_calls": MeterKind.SUM})
    assert result["complete"] is False
    assert result["missing"] == ["eu-central-1"]
    assert result["regions"]["eu-central-1"] == {"answered": False, "error": "no answer within 3s"}
    assert result["meters"]["api_calls"]["value"] == "3.5"
    assert result["meters"]["api_calls"]["events"] == 4

    async def all_answer(region: str) -> tuple[dict[str, Partial], dict[str, MeterKind]]:
        return {"api_calls": part("1", 1)}, {}

    full = await gather(["eu-west-1", "eu-central-1"], all_answer, {"api_calls": MeterKind.SUM})
    assert full["complete"] is True and full["missing"] == []


def test_an_answer_sends_at_most_max_members_digests_in_all() -> None:
    from meshd_plugins.metering.aggregate import member_digest
    from meshd_plugins.metering.query import partials_from_json, partials_to_json

    def users(n: int) -> Partial:
        members = {member_digest("acme-eu", "m", str(i)) for i in range(n)}
        return Partial(members=members, distinct=n)

    kinds = {m: MeterKind.UNIQUE_COUNT for m in ("small", "medium", "large")}
    wire = partials_to_json({"small": users(3), "medium": users(5), "large": users(9)}, kinds, max_members=10)
    assert [wire[m]["members"] is not None for m in ("small", "medium", "large")] == [True, True, False]
    back, back_kinds = partials_from_json(wire)
    assert back["medium"].members == users(5).members and back["large"].members is None
    assert back["large"].distinct == 9 and back_kinds["large"] is MeterKind.UNIQUE_COUNT
