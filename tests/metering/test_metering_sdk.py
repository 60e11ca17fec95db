"""The SDK's local side: checks before sending, batching within limits, stable message ids, resends.

A recording stand-in for JetStream keeps these fast; test_metering_nats.py runs the SDK against a real server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from meshd_plugins.metering.events import Reason
from meshd_plugins.metering.sdk import UsageClient

pytestmark = pytest.mark.anyio


class RecordingJetStream:
    """Acknowledges like JetStream (duplicates by Nats-Msg-Id); fails the first ``fail`` publishes."""

    def __init__(self, fail: int = 0) -> None:
        self.fail, self.messages, self.ids, self.sizes = fail, [], set(), []

    def jetstream(self, timeout: float = 5) -> RecordingJetStream:
        return self

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> Any:
        if self.fail:
            self.fail -= 1
            raise TimeoutError("no ack")
        msg_id = headers["Nats-Msg-Id"]
        duplicate = msg_id in self.ids
        self.ids.add(msg_id)
        if not duplicate:
            self.messages.append((subject, json.loads(data), headers))
            self.sizes.append(len(data))
        return SimpleNamespace(duplicate=duplicate, seq=len(self.messages))


def events(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [{"id": f"e{i}", "source": "//svc", "tenant": "acme-eu", "meter": "api_calls", "value": i, **kw}
            for i in range(n)]


async def test_events_are_batched_within_count_and_byte_limits() -> None:
    js = RecordingJetStream()
    client = UsageClient(js, federation="acme", region="eu-west-1", batch_size=100, max_batch_bytes=4000,
                         receipts=False)
    result = await client.publish(events(250))
    assert result.ok and result.stored == 250 and result.duplicate_messages == 0
    sizes = [len(batch) for _, batch, _ in js.messages]
    assert sum(sizes) == 250 and max(sizes) <= 100
    assert max(js.sizes) <= 4000 and len(js.messages) > 3  # the byte limit split the 100-event batches
    assert {subject for subject, _, _ in js.messages} == {"meshd.acme.usage.eu-west-1"}
    assert [e["id"] for _, batch, _ in js.messages for e in batch] == [f"e{i}" for i in range(250)]


async def test_a_resend_of_the_same_events_carries_the_same_message_ids() -> None:
    js = RecordingJetStream()
    client = UsageClient(js, federation="acme", region="eu-west-1", batch_size=10, receipts=False)
    await client.publish(events(25))
    again = await client.publish(events(25))
    assert again.duplicate_messages == 3 and again.stored == 25 and len(js.messages) == 3


async def test_an_unacknowledged_batch_is_resent_with_its_id_and_failures_are_reported() -> None:
    js = RecordingJetStream(fail=2)
    client = UsageClient(js, federation="acme", region="eu-west-1", batch_size=10, receipts=False, retries=3)
    assert (await client.publish(events(10))).stored == 10
    broken = UsageClient(RecordingJetStream(fail=99), federation="acme", region="eu-west-1", retries=1,
                         receipts=False)
    result = await broken.publish(events(3))
    assert result.stored == 0 and [i for i, _ in result.failed] == [0, 1, 2]
    assert "no ack" in result.failed[0][1]


async def test_bad_events_never_leave_the_process_and_good_ones_are_exact() -> None:
    js = RecordingJetStream()
    client = UsageClient(js, federation="acme", region="eu-west-1", receipts=False, meters={"api_calls": "SUM"})
    result = await client.publish([
        {"id": "ok", "source": "//svc", "tenant": "acme-eu", "meter": "api_calls", "value": Decimal("0.10"),
         "time": datetime(2026, 1, 1, tzinfo=UTC)},
        {"id": "float", "source": "//svc", "tenant": "acme-eu", "meter": "api_calls", "value": 0.1},
        {"id": "neg", "source": "//svc", "tenant": "acme-eu", "meter": "api_calls", "value": -1},
        {"id": "m", "source": "//svc", "tenant": "acme-eu", "meter": "other", "value": 1},
        "not an event",
    ])
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, Reason.BAD_VALUE), (2, Reason.NEGATIVE_VALUE), (3, Reason.UNKNOWN_METER), (4, Reason.MALFORMED_JSON)]
    [(_, sent, _)] = js.messages
    assert sent == {"id": "ok", "source": "//svc", "tenant": "acme-eu", "meter": "api_calls", "value": "0.10",
                    "time": "2026-01-01T00:00:00Z"}


async def test_receipts_waited_for_are_not_kept_afterwards() -> None:
    client = UsageClient(RecordingJetStream(fail=1), federation="acme", region="eu-west-1", retries=0)
    result = await client.publish(events(3), wait=0.01)  # no daemon: nothing answers
    assert result.failed and result.pending == 0
    again = await client.publish(events(2, source="//other"), wait=0.01)
    assert again.stored == 2 and again.pending == 1
    assert client._receipts == {}
