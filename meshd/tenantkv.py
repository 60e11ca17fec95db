"""The tenant registry on JetStream KV: tenants created and changed at run time, seen by every region.

Two kinds of bucket:

- ``meshd_tenants`` (global, every region reads it): key = tenant id, value =
  the record's JSON without customer data, revision = the KV revision that
  every write compares and sets.
- ``meshd_customers_<JURISDICTION>`` (one per jurisdiction, placed on that
  jurisdiction's servers by JetStream placement tags): key = tenant id,
  value = :class:`~meshd.tenantdir.CustomerData` JSON. A region opens only
  its own jurisdiction's bucket; it never reads, writes or subscribes to
  another's.

Each daemon keeps its copy current with a watch on both buckets: the first
full copy is read before :meth:`KvTenantDirectory.run` reports started (the
daemon starts its plugins after that), then every change lands in the copy
and reaches the :meth:`subscribe` callbacks in revision order. A record that
does not validate is counted and skipped, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus
from pydantic import ValidationError

from .backoff import Backoff
from .config import TenantRegistryConfig
from .tenantdir import (
    CopyDirectory,
    CustomerData,
    NewTenant,
    TenantChange,
    TenantConflict,
    TenantDirectoryError,
    UnknownTenant,
    apply_changes,
    new_tenant_id,
    public_record,
    with_customer,
)
from .tenants import Tenant
from .transport import KeyChange, KeyExists, KeyValueStore, KeyWatch, RevisionMismatch, Transport

GLOBAL_BUCKET = "meshd_tenants"
CUSTOMER_BUCKET = "meshd_customers_{}"
MAX_RETRIES = 50
"""Read-modify-write attempts of an update without ``expected_revision`` before giving up (heavy contention)."""


def customer_bucket(jurisdiction: str) -> str:
    return CUSTOMER_BUCKET.format(jurisdiction)


def _dump(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class RegistryUnavailable(TenantDirectoryError):
    """The registry has not been opened (the daemon is still starting) or its bucket cannot be reached."""


class KvTenantDirectory(CopyDirectory):
    """The JetStream KV registry (``tenants: {registry: kv}``)."""

    def __init__(self, settings: TenantRegistryConfig | None = None, *, jurisdiction: str | None,
                 region: str | None = None, clock: Callable[[], float] = time.time,
                 log: logging.Logger | None = None):
        super().__init__(jurisdiction)
        self.settings = settings or TenantRegistryConfig(registry="kv")
        self.region = region
        self.clock = clock
        self.log = log or logging.getLogger(f"meshd.{region or 'tenants'}.tenants")
        self._kv: KeyValueStore | None = None
        self._customer_kv: KeyValueStore | None = None
        self._public: dict[str, Tenant] = {}  # the global records, without customer data
        self._customers: dict[str, CustomerData] = {}
        self._waiters: dict[str, list[tuple[int, anyio.Event]]] = {}
        self.invalid_records = 0
        """Records skipped because they did not validate (a metric)."""
        self.watch_restarts = 0
        # No anyio.Event here: the config loader builds this object outside any event loop.
        self.loaded_at: float | None = None
        """When the first full copy was in memory (None before)."""

    def attach_metrics(self, metrics: Any) -> None:
        """Export the copy's size and the skipped records as the daemon's metrics."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        directory = self

        class Collector:
            def collect(self) -> Any:
                yield GaugeMetricFamily("meshd_tenant_registry_tenants", "Tenants in this region's copy of the registry",
                                        value=len(directory._copy))
                yield CounterMetricFamily("meshd_tenant_registry_invalid_records",
                                          "Registry records skipped because they did not validate",
                                          value=directory.invalid_records)
                yield CounterMetricFamily("meshd_tenant_registry_watch_restarts",
                                          "Times the registry's watch was reopened", value=directory.watch_restarts)

        metrics.register(Collector())

    # ------------------------------------------------------------ opening and watching

    async def open(self, transport: Transport) -> None:
        """Open (creating if need be) the global bucket and this jurisdiction's customer bucket."""
        s = self.settings
        self._kv = await transport.key_value(GLOBAL_BUCKET, replicas=s.replicas, history=s.history)
        if self.jurisdiction:
            placement = s.placement.get(self.jurisdiction, [])
            self._customer_kv = await transport.key_value(customer_bucket(self.jurisdiction),
                                                          replicas=s.customer_replicas or s.replicas,
                                                          history=s.history, placement=placement)

    async def run(self, transport: Transport, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the buckets, read them whole, report started, then follow their changes until cancelled.

        A lost watch (JetStream restarting, the connection gone) is reopened
        with backoff and the copy reconciled with what the buckets hold then.
        """
        backoff = Backoff(0.2, 10.0)
        started = False
        current: list[anyio.CancelScope] = []

        def on_state(connected: bool) -> None:
            # After a reconnect the server may have lost the watch's consumer (a restart); nats-py
            # notices only after missed heartbeats, tens of seconds. Reopening at once costs one read.
            if connected and current:
                current[0].cancel()

        transport.on_state(on_state)
        while True:
            try:
                if self._kv is None:
                    await self.open(transport)
                assert self._kv is not None
                with anyio.CancelScope() as scope:
                    current[:] = [scope]
                    async with anyio.create_task_group() as tg:
                        if self._customer_kv is not None:
                            await tg.start(self._follow, self._customer_kv, self._on_customer)
                        await tg.start(self._follow, self._kv, self._on_record)
                        if not started:
                            started = True
                            self.loaded_at = self.clock()
                            self.log.info("tenant registry loaded: %d tenants", len(self._copy))
                            task_status.started()
                        backoff.reset()
                current.clear()
                if scope.cancelled_caught:
                    self.watch_restarts += 1
                    self.log.info("tenant registry: connection back; reopening the watch")
                    continue
                # Both watches ended without an error: the connection closed under them.
                raise RegistryUnavailable("the registry's watch ended")
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                self.watch_restarts += 1
                wait = backoff.next()
                self.log.warning("tenant registry: %s: %s; retrying in %.1fs", type(exc).__name__, exc, wait)
                await anyio.sleep(wait)

    async def _follow(self, kv: KeyValueStore, on_change: Callable[[KeyChange], None], *,
                      task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        watch: KeyWatch = await kv.watch()
        seen: set[str] | None = set()
        try:
            async for change in watch:
                if change is None:
                    if seen is not None:
                        self._reconcile(on_change, seen)
                        seen = None
                        task_status.started()
                    continue
                if seen is not None:
                    seen.add(change.key)
                on_change(change)
        finally:
            with anyio.CancelScope(shield=True):
                await watch.stop()
        if seen is not None:
            raise RegistryUnavailable("the watch ended before the bucket was read whole")

    def _reconcile(self, on_change: Callable[[KeyChange], None], seen: set[str]) -> None:
        """After a (re)opened watch's initial values: drop what the bucket no longer has."""
        held = self._public if on_change == self._on_record else self._customers
        for key in sorted(set(held) - seen):
            on_change(KeyChange(key, None, 0))

    def _on_record(self, change: KeyChange) -> None:
        if change.value is None:
            if self._public.pop(change.key, None) is not None:
                self._apply(TenantChange("delete", change.key, None, change.revision))
            return
        try:
            data = json.loads(change.value)
            tenant = Tenant.model_validate({**data, "id": change.key, "revision": change.revision})
        except (ValueError, ValidationError) as exc:
            self.invalid_records += 1
            self.log.error("tenant registry: record %s (revision %d) skipped: %s", change.key, change.revision,
                           str(exc).splitlines()[0])
            return
        known = self._public.get(change.key)
        if known is not None and known.revision == change.revision:
            return  # a reopened watch gives again what the copy has
        self._public[change.key] = tenant
        self._publish(change.key)

    def _on_customer(self, change: KeyChange) -> None:
        if change.value is None:
            if self._customers.pop(change.key, None) is None:
                return
        else:
            try:
                data = CustomerData.model_validate_json(change.value)
            except ValidationError as exc:
                self.invalid_records += 1
                self.log.error("tenant registry: customer record %s skipped: %s", change.key,
                               str(exc).splitlines()[0])
                return
            if self._customers.get(change.key) == data:
                return
            self._customers[change.key] = data
        if change.key in self._public:
            self._publish(change.key)

    def _publish(self, tenant_id: str) -> None:
        """Put the merged record of ``tenant_id`` in the copy (customer fields only for this jurisdiction)."""
        public = self._public[tenant_id]
        customer = self._customers.get(tenant_id) if public.residency == self.jurisdiction else None
        tenant = with_customer(public, customer) if customer else public
        self._apply(TenantChange("put", tenant_id, tenant, public.revision))
        for revision, event in self._waiters.get(tenant_id, []):
            if public.revision >= revision:
                event.set()

    async def _until_copied(self, tenant_id: str, revision: int) -> None:
        """Wait (bounded) until this region's copy holds ``revision`` of ``tenant_id``: a write is then readable."""
        current = self._public.get(tenant_id)
        if current is not None and current.revision >= revision:
            return
        event = anyio.Event()
        waiter = (revision, event)
        self._waiters.setdefault(tenant_id, []).append(waiter)
        try:
            with anyio.move_on_after(self.settings.ready_timeout):
                await event.wait()
        finally:
            waiting = self._waiters.get(tenant_id, [])
            if waiter in waiting:
                waiting.remove(waiter)
            if not waiting:
                self._waiters.pop(tenant_id, None)

    def _store(self) -> KeyValueStore:
        if self._kv is None:
            raise RegistryUnavailable("the tenant registry is not open yet")
        return self._kv

    def _customer_store(self) -> KeyValueStore:
        if self._customer_kv is None:
            raise RegistryUnavailable("the tenant registry is not open yet")
        return self._customer_kv

    def _merged(self, tenant: Tenant) -> Tenant:
        assert tenant.id is not None
        customer = self._customers.get(tenant.id) if tenant.residency == self.jurisdiction else None
        return with_customer(tenant, customer) if customer else tenant

    # ------------------------------------------------------------ writes

    async def create(self, new: NewTenant, *, customer: CustomerData | None = None) -> Tenant:
        kv = self._store()
        if customer is not None:
            self._check_jurisdiction("(new)", new.residency)
        now = self.clock()
        while True:
            tenant_id = new_tenant_id()
            tenant = Tenant(id=tenant_id, created=now, updated=now, **new.model_dump(exclude_none=True))
            if customer is not None:
                # Stored before the record appears, so no region's copy ever shows the
                # tenant in this jurisdiction without its customer data.
                await self._customer_store().put(tenant_id, _dump(customer.model_dump(mode="json")))
            try:
                revision = await kv.create(tenant_id, _dump(public_record(tenant)))
            except KeyExists:  # 80 random bits: a clash is (practically) never; take another id
                continue
            break
        await self._until_copied(tenant_id, revision)
        return self._merged(tenant.model_copy(update={"revision": revision}))

    async def _read(self, kv: KeyValueStore, tenant_id: str, newer_than: int = 0) -> tuple[Tenant, int]:
        """The record as the bucket has it now; past ``newer_than`` (a replica may lag behind a lost CAS)."""
        for attempt in range(20):
            entry = await kv.get(tenant_id)
            if entry is None:
                raise UnknownTenant(tenant_id)
            if entry.revision > newer_than:
                break
            await anyio.sleep(0.01 * (attempt + 1))
        assert entry is not None
        data = json.loads(entry.value)
        return Tenant.model_validate({**data, "id": tenant_id, "revision": entry.revision}), entry.revision

    async def update(self, tenant_id: str, changes: Mapping[str, Any], *,
                     expected_revision: int | None = None) -> Tenant:
        kv = self._store()
        current, revision = await self._read(kv, tenant_id)
        for _ in range(MAX_RETRIES):
            if expected_revision is not None and revision != expected_revision:
                raise TenantConflict(tenant_id, revision)
            changed = apply_changes(current, changes, self.clock())
            try:
                new_revision = await kv.update(tenant_id, _dump(public_record(changed)), revision)
            except RevisionMismatch:
                current, revision = await self._read(kv, tenant_id, newer_than=revision)
                continue
            await self._until_copied(tenant_id, new_revision)
            return self._merged(changed.model_copy(update={"revision": new_revision}))
        raise TenantConflict(tenant_id, revision)

    async def delete(self, tenant_id: str, *, expected_revision: int | None = None) -> Tenant:
        return await self.update(tenant_id, {"status": "deleted"}, expected_revision=expected_revision)

    async def customer_data(self, tenant_id: str) -> CustomerData | None:
        tenant = self._copy.get(tenant_id)
        if tenant is None:
            tenant, _ = await self._read(self._store(), tenant_id)
        self._check_jurisdiction(tenant_id, tenant.residency)
        entry = await self._customer_store().get(tenant_id)
        return CustomerData.model_validate_json(entry.value) if entry else None

    async def set_customer_data(self, tenant_id: str, data: CustomerData) -> None:
        tenant = self._copy.get(tenant_id)
        if tenant is None:
            tenant, _ = await self._read(self._store(), tenant_id)
        self._check_jurisdiction(tenant_id, tenant.residency)
        copied = anyio.Event()

        def seen(change: TenantChange) -> None:
            if change.tenant_id == tenant_id and self._customers.get(tenant_id) == data:
                copied.set()

        unsubscribe = self.subscribe(seen)
        try:
            await self._customer_store().put(tenant_id, _dump(data.model_dump(mode="json")))
            if self._customers.get(tenant_id) != data and tenant_id in self._public:
                with anyio.move_on_after(self.settings.ready_timeout):
                    await copied.wait()
        finally:
            unsubscribe()

    async def import_records(self, records: Mapping[str, Tenant]) -> ImportResult:
        """Write tenants with the ids given (``meshd tenants import``); an unchanged one is left alone.

        Customer fields go to this jurisdiction's customer bucket for its own
        tenants; for other jurisdictions' tenants they are not written here
        (:attr:`ImportResult.customer_elsewhere`): the import is run again
        from a region of each jurisdiction.
        """
        kv = self._store()
        result = ImportResult()
        for tenant_id, tenant in sorted(records.items()):
            wanted = tenant.model_copy(update={"id": tenant_id, "revision": 0})
            customer = CustomerData(country=wanted.country, subdivision=wanted.subdivision, vat_id=wanted.vat_id)
            if any(customer.model_dump().values()):
                if wanted.residency != self.jurisdiction:
                    result.customer_elsewhere.setdefault(wanted.residency, []).append(tenant_id)
                else:
                    held = await self._customer_store().get(tenant_id)
                    if held is None or CustomerData.model_validate_json(held.value) != customer:
                        await self._customer_store().put(tenant_id, _dump(customer.model_dump(mode="json")))
                        result.customers_written.append(tenant_id)
            entry = await kv.get(tenant_id)
            if entry is None:
                now = self.clock()
                record = public_record(wanted.model_copy(update={"created": wanted.created or now,
                                                                 "updated": wanted.updated or now}))
                revision = await kv.create(tenant_id, _dump(record))
                result.outcome[tenant_id] = "created"
            else:
                held_record = json.loads(entry.value)
                mine = public_record(wanted)
                # Compared without times: importing the same file again writes nothing.
                if _without_times(held_record) == _without_times(mine):
                    result.outcome[tenant_id] = "unchanged"
                    continue
                record = {**mine, "created": held_record.get("created"), "updated": self.clock()}
                revision = await kv.update(tenant_id, _dump({k: v for k, v in record.items() if v is not None}),
                                           entry.revision)
                result.outcome[tenant_id] = "updated"
            await self._until_copied(tenant_id, revision)
        return result


@dataclass
class ImportResult:
    outcome: dict[str, str] = field(default_factory=dict)
    """``{id: "created" | "updated" | "unchanged"}``."""
    customers_written: list[str] = field(default_factory=list)
    customer_elsewhere: dict[str, list[str]] = field(default_factory=dict)
    """Tenants whose customer fields belong to another jurisdiction, by jurisdiction: not written from here."""


def _without_times(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("created", "updated")}


@contextlib.asynccontextmanager
async def opened(transport: Transport, settings: TenantRegistryConfig | None = None, *, jurisdiction: str | None,
                 region: str | None = None) -> AsyncIterator[KvTenantDirectory]:
    """A registry read whole and followed while the block runs (for the CLI, tests and benchmarks)."""
    directory = KvTenantDirectory(settings, jurisdiction=jurisdiction, region=region)
    async with anyio.create_task_group() as tg:
        await tg.start(directory.run, transport)
        try:
            yield directory
        finally:
            tg.cancel_scope.cancel()
