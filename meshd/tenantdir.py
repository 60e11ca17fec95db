"""The tenant directory: the interface every source of tenants implements.

Callers (routing, metering, billing, the partner API) read a region's
in-memory copy without I/O (:attr:`TenantDirectory.tenants`, :meth:`get`,
:meth:`list`) and learn of changes through :meth:`subscribe`. Writes are
compare-and-set on the record's revision.

Customer data (:class:`CustomerData`: country, subdivision, VAT id, billing
address, email) is personal: a provider keeps it only in the tenant's own
jurisdiction, and a region's copy carries it only for tenants of that
region's jurisdiction. Asking a directory for another jurisdiction's
customer data raises :class:`CustomerDataRefused`.

Providers: :class:`meshd.tenantyaml.YamlTenantDirectory` (``tenants.yaml``,
read-only), :class:`meshd.tenantkv.KvTenantDirectory` (the JetStream KV
registry) and :class:`meshd.testing.MemoryTenantDirectory` (a fake for tests).
"""

from __future__ import annotations

import abc
import base64
import binascii
import bisect
import builtins
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from .config import Name, StrictModel
from .tenants import CUSTOMER_FIELDS, Branding, Jurisdiction, Status, Tenant, residency_regions

if TYPE_CHECKING:
    from .config import RegionMap

log = logging.getLogger("meshd.tenants")

IMMUTABLE_FIELDS = frozenset({"id", "residency", "created", "updated", "revision"})
"""Fields :meth:`TenantDirectory.update` refuses: the registry owns them (a residency never moves)."""


# ---------------------------------------------------------------- errors


class TenantDirectoryError(Exception):
    """Base of the directory's errors."""


class TenantConflict(TenantDirectoryError):
    """A compare-and-set lost: the record is no longer at the revision the caller read."""

    def __init__(self, tenant_id: str, current_revision: int):
        super().__init__(f"tenant {tenant_id!r} changed: its current revision is {current_revision}")
        self.tenant_id = tenant_id
        self.current_revision = current_revision


class UnknownTenant(TenantDirectoryError, KeyError):
    def __init__(self, tenant_id: str):
        super().__init__(f"tenant {tenant_id!r} is not in the tenant directory")
        self.tenant_id = tenant_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ReadOnlyDirectory(TenantDirectoryError):
    """A write on a directory that cannot be written (tenants.yaml)."""


class CustomerDataRefused(TenantDirectoryError):
    """Customer data of a tenant outside this region's jurisdiction was asked for or offered."""

    def __init__(self, tenant_id: str, residency: str, jurisdiction: str | None):
        here = f"this region is in {jurisdiction}" if jurisdiction else "this directory serves no jurisdiction"
        super().__init__(f"customer data of tenant {tenant_id!r} stays in {residency}; {here}")
        self.tenant_id, self.residency, self.jurisdiction = tenant_id, residency, jurisdiction


class InvalidTenant(TenantDirectoryError, ValueError):
    """A create or update with a bad field; ``field`` names it."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------- values


class NewTenant(StrictModel):
    """What :meth:`TenantDirectory.create` needs; the directory adds id, times and revision."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    partner: str | None = None
    plan: str | None = None
    residency: Jurisdiction
    home: Name | None = None
    status: Literal["provisioning", "active"] = "active"
    branding: Branding | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    lang: str | None = None


class CustomerData(StrictModel):
    """A tenant's personal data: kept only in its jurisdiction."""

    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    subdivision: str | None = Field(default=None, pattern=r"^[A-Z0-9]{1,3}$")
    vat_id: str | None = None
    billing_address: str | None = Field(default=None, max_length=1000)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True, slots=True)
class TenantPage:
    items: list[Tenant]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class TenantChange:
    kind: Literal["put", "delete"]
    tenant_id: str
    tenant: Tenant | None
    revision: int


def new_tenant_id() -> str:
    """``t_`` and 16 lowercase base32 characters (80 random bits)."""
    return "t_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidTenant(f"cursor {cursor!r} is not one this directory gave", "cursor") from None


def public_record(tenant: Tenant) -> dict[str, Any]:
    """The non-personal part of a record (what the global registry holds), without the revision."""
    return tenant.model_dump(mode="json", exclude={*CUSTOMER_FIELDS, "revision"}, exclude_none=True)


def with_customer(tenant: Tenant, customer: CustomerData | None) -> Tenant:
    """``tenant`` with its customer fields from ``customer`` (cleared when None)."""
    values = {f: getattr(customer, f) if customer else None for f in CUSTOMER_FIELDS}
    return tenant.model_copy(update=values)


def apply_changes(tenant: Tenant, changes: Mapping[str, Any], now: float) -> Tenant:
    """``tenant`` with ``changes``, validated; :class:`InvalidTenant` names a bad or forbidden field."""
    for key in changes:
        if key in IMMUTABLE_FIELDS:
            raise InvalidTenant(f"field {key!r} of a tenant cannot be changed", key)
        if key in CUSTOMER_FIELDS:
            raise InvalidTenant(f"field {key!r} is customer data: use set_customer_data", key)
    data = {**tenant.model_dump(), **changes, "updated": now}
    try:
        return Tenant.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidTenant(f"tenant field {where}: {err['msg']}", where) from None


# ---------------------------------------------------------------- the interface


class TenantDirectory(abc.ABC):
    """Where a region's tenants come from.

    Reads (:attr:`tenants`, :meth:`get`, :meth:`list`) answer from this
    region's in-memory copy and never do I/O; writes go to the provider's
    store and show in the copy (and reach :meth:`subscribe` callbacks) once
    the store has them.
    """

    read_only: bool = False
    """True when every write raises :class:`ReadOnlyDirectory`."""
    jurisdiction: str | None = None
    """The jurisdiction whose customer data this directory may hold (its region's), or None for none."""

    @property
    @abc.abstractmethod
    def tenants(self) -> Mapping[str, Tenant]:
        """The live copy by tenant id, read without I/O.

        Customer fields are filled only for tenants of :attr:`jurisdiction`
        (a YAML file has them for every tenant: it is shared as it is).
        The mapping may change between two awaits; copy it to iterate
        across one.
        """

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant ``tenant_id`` from the copy (tombstones included), or None; no I/O."""
        return self.tenants.get(tenant_id)

    @abc.abstractmethod
    def list(self, *, partner: str | None = None, status: str | None = None, residency: str | None = None,
             plan: str | None = None, cursor: str | None = None, limit: int = 100) -> TenantPage:
        """At most ``limit`` tenants matching every filter given, ordered by id, after ``cursor``.

        ``next_cursor`` is None on the last page; a cursor stays valid when
        tenants are added or removed (it names a position, not an index).
        Tombstones (status ``deleted``) are listed only when ``status``
        asks for them. No I/O.
        """

    @abc.abstractmethod
    def subscribe(self, callback: Callable[[TenantChange], None]) -> Callable[[], None]:
        """Call ``callback`` after each change of the copy, in order; returns the unsubscribe function.

        A callback that raises is logged; the others and the copy go on.
        """

    @abc.abstractmethod
    async def create(self, new: NewTenant, *, customer: CustomerData | None = None) -> Tenant:
        """Create a tenant with a new, unique, stable id (``t_`` + 16 base32) and return it with its revision.

        The copy has it when this returns. ``customer`` is stored only when
        the residency is :attr:`jurisdiction`; else :class:`CustomerDataRefused`
        and nothing is created.
        """

    @abc.abstractmethod
    async def update(self, tenant_id: str, changes: Mapping[str, Any], *,
                     expected_revision: int | None = None) -> Tenant:
        """Apply ``changes`` if the record is still at ``expected_revision``; return the new record.

        Of concurrent updates at the same revision exactly one wins; the
        others raise :class:`TenantConflict` with the current revision.
        ``expected_revision=None`` reads, modifies and retries until it
        wins. :class:`UnknownTenant`, :class:`InvalidTenant` (immutable,
        customer or invalid field).
        """

    @abc.abstractmethod
    async def delete(self, tenant_id: str, *, expected_revision: int | None = None) -> Tenant:
        """Mark the tenant ``deleted`` (the record stays, a tombstone); compare-and-set like :meth:`update`."""

    @abc.abstractmethod
    async def customer_data(self, tenant_id: str) -> CustomerData | None:
        """The tenant's customer data, None if none was set.

        :class:`CustomerDataRefused` for a tenant outside :attr:`jurisdiction`,
        :class:`UnknownTenant` for an unknown one.
        """

    @abc.abstractmethod
    async def set_customer_data(self, tenant_id: str, data: CustomerData) -> None:
        """Store the tenant's customer data in its jurisdiction only (:class:`CustomerDataRefused` elsewhere)."""

    def residency_regions(self, tenant: str, region_map: RegionMap) -> builtins.list[str]:
        """The regions whose jurisdiction is the tenant's residency (empty for an unknown tenant)."""
        return residency_regions(self.get(tenant), region_map)


# ---------------------------------------------------------------- the shared in-memory copy


class CopyDirectory(TenantDirectory):
    """A directory answering reads from an in-memory dict that :meth:`_apply` keeps current."""

    def __init__(self, jurisdiction: str | None = None) -> None:
        self.jurisdiction = jurisdiction
        self._copy: dict[str, Tenant] = {}
        self._order: builtins.list[str] | None = None  # sorted ids, rebuilt lazily after a new id
        self._callbacks: builtins.list[Callable[[TenantChange], None]] = []

    @property
    def tenants(self) -> Mapping[str, Tenant]:
        return self._copy

    def _ids(self) -> builtins.list[str]:
        if self._order is None:
            self._order = sorted(self._copy)
        return self._order

    def list(self, *, partner: str | None = None, status: str | None = None, residency: str | None = None,
             plan: str | None = None, cursor: str | None = None, limit: int = 100) -> TenantPage:
        if limit < 1:
            raise InvalidTenant(f"limit must be at least 1, not {limit}", "limit")
        ids = self._ids()
        start = bisect.bisect_right(ids, decode_cursor(cursor)) if cursor else 0
        items: builtins.list[Tenant] = []
        last = ""
        for tenant_id in ids[start:]:
            t = self._copy.get(tenant_id)
            if t is None or not _matches(t, partner, status, residency, plan):
                continue
            if len(items) == limit:
                return TenantPage(items, encode_cursor(last))
            items.append(t)
            last = tenant_id
        return TenantPage(items, None)

    def subscribe(self, callback: Callable[[TenantChange], None]) -> Callable[[], None]:
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
        return unsubscribe

    def _apply(self, change: TenantChange) -> None:
        """Put the change in the copy, then tell the subscribers."""
        if change.kind == "put" and change.tenant is not None:
            if change.tenant_id not in self._copy:
                self._order = None
            self._copy[change.tenant_id] = change.tenant
        else:
            if self._copy.pop(change.tenant_id, None) is not None:
                self._order = None
        for callback in list(self._callbacks):
            try:
                callback(change)
            except Exception as exc:  # a subscriber's bug must not stop the copy
                log.error("tenant change callback %r failed: %s: %s", callback, type(exc).__name__, exc,
                          exc_info=exc)

    def _known(self, tenant_id: str) -> Tenant:
        tenant = self._copy.get(tenant_id)
        if tenant is None:
            raise UnknownTenant(tenant_id)
        return tenant

    def _check_jurisdiction(self, tenant_id: str, residency: str) -> None:
        if self.jurisdiction is None or residency != self.jurisdiction:
            raise CustomerDataRefused(tenant_id, residency, self.jurisdiction)

    def __iter__(self) -> Iterator[str]:
        return iter(self._copy)


def _matches(t: Tenant, partner: str | None, status: str | None, residency: str | None, plan: str | None) -> bool:
    if status is None:
        if t.status == "deleted":
            return False
    elif t.status != status:
        return False
    return ((partner is None or t.partner == partner) and (residency is None or t.residency == residency)
            and (plan is None or t.plan == plan))


__all__ = [
    "CopyDirectory", "CustomerData", "CustomerDataRefused", "InvalidTenant", "NewTenant", "ReadOnlyDirectory",
    "Status", "TenantChange", "TenantConflict", "TenantDirectory", "TenantDirectoryError", "TenantPage",
    "UnknownTenant", "new_tenant_id",
]
