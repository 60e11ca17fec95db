"""Gap-free invoice numbers per seller entity: concurrent issuers, reruns, a run that died half-way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshd.config import NatsConfig
from meshd.memtransport import MemoryNetwork
from meshd.natsserver import NatsCluster, NatsServer
from meshd.transport import NatsTransport, Transport
from meshd_plugins.billing.issuer import Issuer, KeptElsewhere
from meshd_plugins.billing.numbering import Busy, InvoiceNumbers
from meshd_plugins.billing.store import Immutable, InvoiceStore

pytestmark = pytest.mark.anyio
BUCKET = "meshd_invoice_numbers"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def memory_kv():  # type: ignore[no-untyped-def]
    t = MemoryNetwork().transport("a")
    await t.connect()
    return await t.key_value(BUCKET)


async def test_numbers_follow_each_other_and_a_rerun_gets_the_same_number() -> None:
    numbers = InvoiceNumbers(await memory_kv())
    got = [await numbers.number("meshd-eu", "invoice", f"t{i}.2026-10", "d") for i in range(3)]
    assert [(g.number, g.issued_before) for g in got] == [(1, False), (2, False), (3, False)]
    again = await numbers.number("meshd-eu", "invoice", "t1.2026-10", "d")
    assert (again.number, again.issued_before) == (2, True)
    # another entity counts on its own
    assert (await numbers.number("meshd-us", "invoice", "t1.2026-10", "d")).number == 1
    assert await numbers.head("meshd-eu") == 3


async def test_a_run_that_died_after_taking_its_number_is_resumed_not_renumbered() -> None:
    kv = await memory_kv()
    clock = Clock()
    dead = InvoiceNumbers(kv, clock=clock)
    await dead.number("meshd-eu", "invoice", "a.2026-10", "d")
    # what a run leaves when it dies between taking number 2 and recording it on its claim
    claim = {"claim": "dead-run", "at": clock()}
    await kv.create("ref.meshd-eu.invoice.b.2026-10", json.dumps(claim).encode())
    await kv.create("n.meshd-eu.2", json.dumps({"claim": "dead-run", "at": clock(), "kind": "invoice",
                                                "subject": "b.2026-10", "digest": "d"}).encode())
    clock.now += 5
    got = await InvoiceNumbers(kv, clock=clock).number("meshd-eu", "invoice", "b.2026-10", "d")
    assert (got.number, got.issued_before) == (2, True)
    assert json.loads((await kv.get("ref.meshd-eu.invoice.b.2026-10")).value)["number"] == 2  # type: ignore[union-attr]
    assert (await dead.number("meshd-eu", "invoice", "c.2026-10", "d")).number == 3


async def test_a_fresh_claim_without_a_number_is_busy_and_a_stale_one_is_taken_over() -> None:
    kv = await memory_kv()
    clock = Clock()
    await kv.create("ref.meshd-eu.invoice.b.2026-10", json.dumps({"claim": "other", "at": clock()}).encode())
    numbers = InvoiceNumbers(kv, stale_after=600, clock=clock)
    with pytest.raises(Busy, match="being issued by another run"):
        await numbers.number("meshd-eu", "invoice", "b.2026-10", "d")
    assert await numbers.head("meshd-eu") == 0  # no number was taken by the refusal
    clock.now += 601
    got = await numbers.number("meshd-eu", "invoice", "b.2026-10", "d")
    assert (got.number, got.issued_before) == (1, False)


async def test_an_issued_invoice_is_never_overwritten(tmp_path: Path) -> None:
    store = InvoiceStore(tmp_path)
    kv = await memory_kv()
    issuer = Issuer(InvoiceNumbers(kv), store, {"meshd-eu": "EU-"}, "eu-west-1")
    doc = {"type": "invoice", "seller": {"id": "meshd-eu"}, "customer": {"tenant": "t"}, "period": "2026-10",
           "total": "1.00", "number": None}
    issued, new = await issuer.issue(doc)
    assert (issued["number"], new) == ("EU-000001", True)
    again, new = await issuer.issue(doc)
    assert (again, new) == (issued, False)
    with pytest.raises(Immutable, match="never changes"):
        store.put("meshd-eu", {**issued, "total": "2.00"})
    assert store.get("meshd-eu", "EU-000001") == issued
    assert (store.path("meshd-eu", "EU-000001").stat().st_mode & 0o777) == 0o400
    # another region of the jurisdiction asking again is told where the invoice is kept, and stores nothing
    other = Issuer(InvoiceNumbers(kv), InvoiceStore(tmp_path / "central"), {"meshd-eu": "EU-"}, "eu-central-1")
    with pytest.raises(KeptElsewhere, match="EU-000001 was issued by eu-west-1"):
        await other.issue(doc)
    assert other.store.numbers("meshd-eu") == []


@pytest.fixture(params=["server", "cluster"])
async def two_regions(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[tuple[Transport, Transport, int]]:
    """Two daemons' connections to real JetStream: one nats-server, or two nodes of a 3-node cluster (R3)."""
    if request.param == "server":
        servers: Any = NatsServer(tmp_path / "nats").start()
        urls, replicas = [servers.url, servers.url], 1
    else:
        servers = NatsCluster(tmp_path / "cluster", size=3).start()
        urls, replicas = [servers.nodes[0].url, servers.nodes[2].url], 3
    a = NatsTransport(NatsConfig(servers=[urls[0]]), name="eu-west-1")
    b = NatsTransport(NatsConfig(servers=[urls[1]]), name="eu-central-1")
    await a.connect()
    await b.connect()
    try:
        yield a, b, replicas
    finally:
        await a.close()
        await b.close()
        servers.stop()


@pytest.mark.nats
async def test_two_concurrent_issuers_on_nats_leave_no_gap_and_no_duplicate(two_regions) -> None:  # type: ignore[no-untyped-def]
    a, b, replicas = two_regions
    kv_a = await a.key_value(BUCKET, replicas=replicas)
    issuers = [InvoiceNumbers(kv_a), InvoiceNumbers(await b.key_value(BUCKET, replicas=replicas))]
    # 40 tenants each billed by both regions at once (two runs of the same month), interleaved
    subjects = [f"tenant-{i}.2026-10" for i in range(40)]
    jobs = [issuers[k].number("meshd-eu", "invoice", s, "d") for s in subjects for k in (0, 1)]

    # Busy: the other region held that tenant's claim at that moment and numbered it.
    results = await asyncio.gather(*jobs, return_exceptions=True)
    busy = [r for r in results if isinstance(r, Busy)]
    done = [r for r in results if not isinstance(r, BaseException)]
    assert not [r for r in results if isinstance(r, BaseException) and not isinstance(r, Busy)]
    per_subject: dict[str, set[int]] = {}
    for subject, r in zip([s for s in subjects for _ in (0, 1)], results, strict=True):
        if not isinstance(r, BaseException):
            per_subject.setdefault(subject, set()).add(r.number)
    assert set(per_subject) == set(subjects), "every tenant got its invoice number"
    assert all(len(n) == 1 for n in per_subject.values()), "a tenant's month has one number"
    taken = sorted(n for ns in per_subject.values() for n in ns)
    assert taken == list(range(1, len(subjects) + 1)), "numbers 1..40, no gap, no duplicate"
    assert len(done) + len(busy) == 80
    # the chain itself: every number's record exists, none past the head
    assert await issuers[0].head("meshd-eu") == 40 and await kv_a.get("n.meshd-eu.41") is None
    assert issuers[0].conflicts + issuers[1].conflicts > 0, "the issuers really raced for the same numbers"
