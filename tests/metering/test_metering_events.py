"""Event validation: every bad input gets a reason, every good one an exact value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meshd_plugins.metering.config import MeterKind
from meshd_plugins.metering.events import (
    Policy,
    Reason,
    Rejection,
    UsageEvent,
    batch_msg_id,
    check_event,
    check_message,
    event_msg_id,
)

NOW = datetime(2026, 9, 21, 12, tzinfo=UTC).timestamp()
KINDS = {"api_calls": MeterKind.SUM, "requests": MeterKind.COUNT, "peak": MeterKind.MAX,
         "users": MeterKind.UNIQUE_COUNT, "seats": MeterKind.LATEST}


def resident(tenant: str) -> tuple[Reason, str] | None:
    if tenant == "globex-us":
        return Reason.NOT_RESIDENT, "US tenant"
    if tenant == "acme-eu":
        return None
    return Reason.UNKNOWN_TENANT, "unknown"


DAEMON = Policy(meters=KINDS, tenant_check=resident, future_skew=300, max_age=31 * 86400)


def event(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"id": "e1", "source": "//svc", "tenant": "acme-eu", "meter": "api_calls",
                               "value": 2, "time": "2026-09-21T07:00:00Z"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("override, reason", [
    ({"id": None}, Reason.MISSING_ID),
    ({"id": ""}, Reason.MISSING_ID),
    ({"source": None}, Reason.MISSING_SOURCE),
    ({"tenant": None}, Reason.MISSING_TENANT),
    ({"meter": None}, Reason.MISSING_METER),
    ({"id": 7}, Reason.BAD_FIELD),
    ({"id": "a\nb"}, Reason.BAD_FIELD),
    ({"id": "x" * 300}, Reason.BAD_FIELD),
    ({"specversion": "0.3"}, Reason.BAD_FIELD),
    ({"meter": "nope"}, Reason.UNKNOWN_METER),
    ({"value": -1}, Reason.NEGATIVE_VALUE),
    ({"value": None}, Reason.MISSING_VALUE),
    ({"value": "12,5"}, Reason.BAD_VALUE),
    ({"value": True}, Reason.BAD_VALUE),
    ({"value": 0.1}, Reason.BAD_VALUE),
    ({"value": Decimal("1e-19")}, Reason.BAD_VALUE),
    ({"value": 10**31}, Reason.BAD_VALUE),
    ({"value": Decimal("NaN")}, Reason.BAD_VALUE),
    ({"time": "yesterday"}, Reason.BAD_TIME),
    ({"time": "2026-09-21T07:00:00"}, Reason.BAD_TIME),
    ({"time": 1790000000}, Reason.BAD_TIME),
    ({"time": "2026-09-21T13:00:00Z"}, Reason.FUTURE_TIME),
    ({"time": "2026-08-01T00:00:00Z"}, Reason.TOO_OLD),
    ({"tenant": "globex-us"}, Reason.NOT_RESIDENT),
    ({"tenant": "who"}, Reason.UNKNOWN_TENANT),
    ({"meter": "users", "value": Decimal("1.5")}, Reason.BAD_VALUE),
])
def test_bad_events_are_rejected_with_their_reason(override: dict[str, object], reason: Reason) -> None:
    result = check_event(event(**override), NOW, DAEMON, index=3)
    assert isinstance(result, Rejection), result
    assert result.reason is reason
    assert result.index == 3
    assert result.detail


def test_a_good_event_keeps_its_exact_value_and_time() -> None:
    result = check_event(event(value="0.1"), NOW, DAEMON)
    assert isinstance(result, UsageEvent)
    assert result.value == Decimal("0.1") and type(result.value) is Decimal
    assert result.time == NOW - 5 * 3600
    missing_time = check_event(event(time=None), NOW, DAEMON)
    assert isinstance(missing_time, UsageEvent) and missing_time.time == NOW


def test_count_ignores_values_and_unique_count_takes_identifiers() -> None:
    counted = check_event(event(meter="requests", value=None, time=None), NOW, DAEMON)
    assert isinstance(counted, UsageEvent) and counted.value is None
    unique = check_event(event(meter="users", value=42, time=None), NOW, DAEMON)
    assert isinstance(unique, UsageEvent) and unique.value == "42"
    negative_max = check_event(event(meter="peak", value=-3, time=None), NOW, DAEMON)
    assert isinstance(negative_max, UsageEvent) and negative_max.value == Decimal(-3)


def test_json_numbers_are_parsed_as_decimals_never_floats() -> None:
    data = b'[{"id":"a","source":"s","tenant":"acme-eu","meter":"api_calls","value":0.1},' \
           b'{"id":"b","source":"s","tenant":"acme-eu","meter":"api_calls","value":1e2}]'
    events, rejected = check_message(data, NOW, DAEMON)
    assert not rejected
    assert [e.value for e in events] == [Decimal("0.1"), Decimal("100")]
    assert str(events[1].value) == "100"  # not 1E+2
    assert sum(e.value for e in events) == Decimal("100.1")  # type: ignore[misc]


@pytest.mark.parametrize("payload", [b"{not json", b"42", b'"text"', b"\xff\xfe", b'{"value": NaN}'])
def test_malformed_messages_are_rejected_whole(payload: bytes) -> None:
    events, rejected = check_message(payload, NOW, DAEMON)
    assert events == []
    assert [r.reason for r in rejected] == [Reason.MALFORMED_JSON]


def test_a_batch_keeps_its_good_events_and_names_the_bad_ones_by_index() -> None:
    batch = [event(id="ok1", time=None), "not an object", event(id="neg", value=-5, time=None),
             event(id="ok2", time=None)]
    events, rejected = check_message(json.dumps(batch).encode(), NOW, DAEMON)
    assert [e.id for e in events] == ["ok1", "ok2"]
    assert [(r.index, r.reason) for r in rejected] == [(1, Reason.MALFORMED_JSON), (2, Reason.NEGATIVE_VALUE)]
    assert rejected[1].id == "neg" and rejected[1].source == "//svc"


def test_the_sdk_policy_checks_shape_without_knowing_meters_or_tenants() -> None:
    sdk = Policy()
    ok = check_event(event(meter="anything", tenant="anyone", time=None), NOW, sdk)
    assert isinstance(ok, UsageEvent)
    assert check_event(event(id=None), NOW, sdk).reason is Reason.MISSING_ID  # type: ignore[union-attr]
    assert check_event(event(value=0.5), NOW, sdk).reason is Reason.BAD_VALUE  # type: ignore[union-attr]


def test_message_ids_identify_events_and_batches() -> None:
    assert event_msg_id("s", "1") == event_msg_id("s", "1")
    assert event_msg_id("s", "1") != event_msg_id("s1", "")  # no ambiguity from concatenation
    assert batch_msg_id([("s", "1"), ("s", "2")]) == batch_msg_id([("s", "1"), ("s", "2")])
    assert batch_msg_id([("s", "1"), ("s", "2")]) != batch_msg_id([("s", "2"), ("s", "1")])
