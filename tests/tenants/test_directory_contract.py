"""The TenantDirectory contract, on the in-memory fake and on the KV registry (one nats-server, and an R3 cluster)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd import (
    Branding,
    CustomerData,
    CustomerDataRefused,
    NewTenant,
    TenantChange,
    TenantConflict,
    TenantDirectory,
    UnknownTenant,
)
from meshd.config import NatsConfig, TenantRegistryConfig
from meshd.natsserver import NatsCluster, NatsServer
from meshd.tenantdir import InvalidTenant
from meshd.tenantkv import opened
from meshd.testing import MemoryTenantDirectory, until
from meshd.transport import NatsTransport

pytestmark = pytest.mark.anyio

Opener = Callable[..., contextlib.AbstractAsyncContextManager[TenantDirectory]]


@pytest.fixture(params=["memory", "kv", "kv-r3"])
def open_directory(request: pytest.FixtureRequest, tmp_path: Path, nats_binary: str) -> Any:
    """``async with open_directory(jurisdiction) as d``: a directory of the kind under test, empty at first."""
    yield from _opener(request.param, tmp_path, nats_binary)


@pytest.fixture(params=["kv", "kv-r3"])
def open_kv(request: pytest.FixtureRequest, tmp_path: Path, nats_binary: str) -> Any:
    """Like ``open_directory``, KV only: each call is another connection to the same registry."""
    yield from _opener(request.param, tmp_path, nats_binary)


def _opener(kind: str, tmp_path: Path, nats_binary: str) -> Any:
    servers: list[str] = []
    cleanup: list[Callable[[], None]] = []
    if kind == "kv":
        server = NatsServer(tmp_path / "nats", binary=nats_binary).start()
        servers, cleanup = [server.url], [server.stop]
    elif kind == "kv-r3":
        cluster = NatsCluster(tmp_path / "cluster", size=3)
        for node in cluster.nodes:
            node.binary = nats_binary
        cluster.start()
        servers, cleanup = cluster.urls, [cluster.stop]
    settings = TenantRegistryConfig(registry="kv", replicas=3 if kind == "kv-r3" else 1)

    @contextlib.asynccontextmanager
    async def make(jurisdiction: str = "EU") -> AsyncIterator[TenantDirectory]:
        if kind == "memory":
            yield MemoryTenantDirectory(jurisdiction=jurisdiction)
            return
        transport = NatsTransport(NatsConfig(servers=servers), name=f"test-{jurisdiction}")
        await transport.connect()
        try:
            async with opened(transport, settings, jurisdiction=jurisdiction) as directory:
                yield directory
        finally:
            await transport.close()

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for stop in cleanup:
        stop()


def eu(name: str, **kw: Any) -> NewTenant:
    return NewTenant(name=name, residency="EU", plan=kw.pop("plan", "starter"), **kw)


async def test_create_makes_a_unique_stable_id_and_the_copy_has_it(open_directory: Opener) -> None:
    async with open_directory() as d:
        made = [await d.create(eu(f"shop {i}", partner="p1")) for i in range(5)]
        ids = {t.id for t in made}
        assert len(ids) == 5
        for t in made:
            assert t.id and re.fullmatch(r"t_[a-z2-7]{16}", t.id)
            assert t.revision > 0 and t.created and t.status == "active"
            assert d.get(t.id) == t
            assert d.tenants[t.id].name == t.name
        assert d.get("t_aaaaaaaaaaaaaaaa") is None


async def test_list_is_ordered_by_id_filtered_and_paginated(open_directory: Opener) -> None:
    async with open_directory() as d:
        for i in range(7):
            await d.create(eu(f"a{i}", partner="p1", plan="pro" if i % 2 else "starter"))
        for i in range(3):
            await d.create(eu(f"b{i}", partner="p2"))
        us = await d.create(NewTenant(name="us", residency="US", partner="p1"))

        everything = d.list(limit=1000).items
        assert [t.id for t in everything] == sorted(t.id for t in everything if t.id)
        assert len(everything) == 11

        pages, cursor = [], None
        while True:
            page = d.list(partner="p1", cursor=cursor, limit=3)
            pages.append(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [len(p) for p in pages] == [3, 3, 2]
        listed = [t.id for p in pages for t in p]
        assert listed == sorted(listed) and len(set(listed)) == 8
        assert all(t.partner == "p1" for p in pages for t in p)

        assert {t.id for t in d.list(residency="US").items} == {us.id}
        assert len(d.list(partner="p1", plan="pro").items) == 3
        with pytest.raises(InvalidTenant):
            d.list(cursor="%%%not a cursor")


async def test_update_is_compare_and_set(open_directory: Opener) -> None:
    async with open_directory() as d:
        t = await d.create(eu("cas"))
        assert t.id
        first = await d.update(t.id, {"plan": "pro"}, expected_revision=t.revision)
        assert first.plan == "pro" and first.revision > t.revision
        with pytest.raises(TenantConflict) as lost:
            await d.update(t.id, {"plan": "business"}, expected_revision=t.revision)
        assert lost.value.current_revision == first.revision
        assert str(first.revision) in str(lost.value)
        assert d.tenants[t.id].plan == "pro"


async def test_of_two_concurrent_updates_exactly_one_wins(open_directory: Opener) -> None:
    async with open_directory() as d:
        t = await d.create(eu("race"))
        assert t.id
        tid = t.id
        won: list[Any] = []
        lost: list[TenantConflict] = []

        async def change(plan: str) -> None:
            try:
                won.append(await d.update(tid, {"plan": plan}, expected_revision=t.revision))
            except TenantConflict as exc:
                lost.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(change, "pro")
            tg.start_soon(change, "business")
        assert len(won) == 1 and len(lost) == 1
        assert lost[0].current_revision == won[0].revision
        assert d.tenants[tid].plan == won[0].plan


async def test_update_without_revision_retries_until_it_wins(open_directory: Opener) -> None:
    async with open_directory() as d:
        t = await d.create(eu("rmw"))
        assert t.id
        tid = t.id
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(d.update, tid, {"name": f"n{i}"})
        assert d.tenants[tid].revision >= t.revision + 5 or open_directory.kind == "memory"  # type: ignore[attr-defined]
        assert d.tenants[tid].name in {f"n{i}" for i in range(5)}


async def test_bad_changes_are_refused_naming_the_field(open_directory: Opener) -> None:
    async with open_directory() as d:
        t = await d.create(eu("strict"))
        assert t.id
        for changes, field in [({"residency": "US"}, "residency"), ({"id": "x"}, "id"),
                               ({"vat_id": "DE1"}, "vat_id"), ({"status": "gone"}, "status"),
                               ({"branding": {"primary_color": "red", "company_name": "X"}}, "branding")]:
            with pytest.raises(InvalidTenant) as bad:
                await d.update(t.id, changes)
            assert field in str(bad.value) and bad.value.field and bad.value.field.startswith(field)
        with pytest.raises(UnknownTenant):
            await d.update("t_nobodyhere00000", {"plan": "pro"})
        assert d.tenants[t.id].revision == t.revision


async def test_delete_keeps_a_tombstone(open_directory: Opener) -> None:
    async with open_directory() as d:
        t = await d.create(eu("gone"))
        assert t.id
        deleted = await d.delete(t.id, expected_revision=t.revision)
        assert deleted.status == "deleted"
        assert d.get(t.id) is not None and d.get(t.id).status == "deleted"  # type: ignore[union-attr]
        assert t.id not in {x.id for x in d.list().items}
        assert [x.id for x in d.list(status="deleted").items] == [t.id]


async def test_subscribe_sees_each_change_after_the_copy_has_it(open_directory: Opener) -> None:
    async with open_directory() as d:
        seen: list[tuple[TenantChange, bool]] = []

        def on_change(change: TenantChange) -> None:
            seen.append((change, d.get(change.tenant_id) == change.tenant))

        unsubscribe = d.subscribe(on_change)
        t = await d.create(eu("watched", branding=Branding(primary_color="#112233", company_name="Shop")))
        assert t.id
        await d.update(t.id, {"plan": "pro"})
        await until(lambda: len(seen) >= 2, timeout=5, what="two changes")
        assert [c.kind for c, _ in seen[:2]] == ["put", "put"]
        assert all(copied for _, copied in seen)
        assert seen[1][0].tenant and seen[1][0].tenant.plan == "pro"
        unsubscribe()
        await d.update(t.id, {"plan": "business"})
        count = len(seen)
        assert d.tenants[t.id].plan == "business" and len(seen) == count


async def test_a_failing_subscriber_does_not_stop_the_others(open_directory: Opener) -> None:
    async with open_directory() as d:
        got: list[str] = []

        def broken(change: TenantChange) -> None:
            raise RuntimeError("subscriber bug")

        d.subscribe(broken)
        d.subscribe(lambda c: got.append(c.tenant_id))
        t = await d.create(eu("robust"))
        await until(lambda: t.id in got, timeout=5, what="the second subscriber told")
        assert d.get(t.id or "") is not None


async def test_customer_data_only_in_its_jurisdiction(open_directory: Opener) -> None:
    async with open_directory("EU") as d:
        data = CustomerData(country="DE", vat_id="DE123456789", billing_address="1 Hauptstr, Berlin",
                            email="billing@example.de")
        t = await d.create(eu("private"), customer=data)
        assert t.id
        assert await d.customer_data(t.id) == data
        # Billing runs in the jurisdiction: the copy's customer fields are filled there.
        assert d.tenants[t.id].country == "DE" and d.tenants[t.id].vat_id == "DE123456789"
        us = await d.create(NewTenant(name="elsewhere", residency="US"))
        assert us.id
        with pytest.raises(CustomerDataRefused) as refused:
            await d.customer_data(us.id)
        assert "US" in str(refused.value) and "EU" in str(refused.value)
        with pytest.raises(CustomerDataRefused):
            await d.set_customer_data(us.id, data)
        before = len(d.tenants)
        with pytest.raises(CustomerDataRefused):
            await d.create(NewTenant(name="x", residency="US"), customer=data)
        assert len(d.tenants) == before
        await d.set_customer_data(t.id, data.model_copy(update={"email": "new@example.de"}))
        assert (await d.customer_data(t.id)).email == "new@example.de"  # type: ignore[union-attr]


async def test_a_change_reaches_another_connections_copy_quickly(open_kv: Opener) -> None:
    async with open_kv("EU") as writer, open_kv("US") as reader:
        arrived: dict[str, anyio.Event] = {}
        at: dict[str, float] = {}

        def on_change(change: TenantChange) -> None:
            if change.tenant_id in arrived and change.tenant and change.tenant.plan == "pro":
                at[change.tenant_id] = time.perf_counter()
                arrived[change.tenant_id].set()

        reader.subscribe(on_change)
        t = await writer.create(eu("far"))
        assert t.id
        arrived[t.id] = anyio.Event()
        start = time.perf_counter()
        await writer.update(t.id, {"plan": "pro"})
        with anyio.fail_after(5):
            await arrived[t.id].wait()
        assert at[t.id] - start < 1.0  # the contract: well under a second
        assert reader.tenants[t.id].plan == "pro" and reader.tenants[t.id].revision == writer.tenants[t.id].revision


async def test_concurrent_updates_from_two_connections_one_wins(open_kv: Opener) -> None:
    async with open_kv("EU") as a, open_kv("EU") as b:
        t = await a.create(eu("contested"))
        assert t.id
        tid = t.id
        await until(lambda: tid in b.tenants, timeout=5)
        results: list[Any] = []

        async def change(d: TenantDirectory, plan: str) -> None:
            try:
                results.append(await d.update(tid, {"plan": plan}, expected_revision=t.revision))
            except TenantConflict as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(change, a, "pro")
            tg.start_soon(change, b, "business")
        won = [r for r in results if not isinstance(r, TenantConflict)]
        lost = [r for r in results if isinstance(r, TenantConflict)]
        assert len(won) == 1 and len(lost) == 1
        assert lost[0].current_revision == won[0].revision
        await until(lambda: a.tenants[tid].plan == b.tenants[tid].plan == won[0].plan, timeout=5)


async def test_a_record_that_does_not_validate_is_counted_and_skipped(open_kv: Opener) -> None:
    async with open_kv("EU") as d:
        from meshd.tenantkv import KvTenantDirectory

        assert isinstance(d, KvTenantDirectory) and d._kv is not None
        await d._kv.put("t_broken0000000000", b'{"residency": "nowhere"}')
        good = await d.create(eu("after the bad one"))
        await until(lambda: d.invalid_records == 1, timeout=5)
        assert "t_broken0000000000" not in d.tenants and good.id in d.tenants
