"""The billing plugin inside a daemon: load the files, issue invoices and credit notes on request.

Invoices are issued only by a region of the tenant's jurisdiction, onto its
own disk (``store_dir``): invoices hold customer data (address, VAT ID),
which never leaves its jurisdiction. The shared number bucket holds only
tenant ids, periods and digests.
"""

from __future__ import annotations

import inspect
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from meshd.adjustments import InvoiceAdjustment
from meshd.config import ConfigError
from meshd.transport import TransportError

from .config import BillingConfig
from .fx import load_fx
from .invoice import BillingFiles, InvoiceError, check_closed, compute, credit_note, usage_values
from .issuer import Issuer, KeptElsewhere
from .matrix import load_matrix
from .numbering import Busy, InvoiceNumbers
from .store import Immutable, InvoiceStore
from .taxrates import load_tax_rates

SECTION = "billing"
KEYRING_PURPOSE = "invoices"


class Failure(Exception):
    """A request that cannot be served: an HTTP status, a stable code and a message naming the field."""

    def __init__(self, status: int, code: str, message: str):
        self.status, self.code = status, code
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "code": self.code}


def meters_of(config: Any) -> list[str] | None:
    """The metering plugin's meters, when that plugin is loaded (None: not known, not checked)."""
    section = config.plugin_sections.get("metering")
    return list(section.meters) if section is not None and hasattr(section, "meters") else None


def load_files(settings: BillingConfig, meters: list[str] | None) -> BillingFiles:
    assert settings.matrix is not None
    return BillingFiles(load_matrix(settings.matrix, meters), load_tax_rates(settings.tax_rates),
                        load_fx(settings.fx_rates))


class Runtime:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.settings: BillingConfig = daemon.plugin_config(SECTION)
        self.log = logging.getLogger(f"meshd.{daemon.region}.billing")
        self.files: BillingFiles | None = None
        self.issuer: Issuer | None = None
        self.state, self.detail = "starting", ""
        self._store: InvoiceStore | None = None
        m = daemon.metrics
        self.m_issued = m.counter("billing_documents_issued_total", "Invoices and credit notes issued", ["type"])
        self.m_refused = m.counter("billing_requests_refused_total", "Billing requests refused, by reason", ["code"])

    def store_root(self) -> Path:
        return Path(self.settings.store_dir or self.daemon.state_dir / "billing")

    @property
    def store(self) -> InvoiceStore:
        """The store as opened at start (sealed with the keyring); before that, a plaintext view of it."""
        return self._store or InvoiceStore(self.store_root())

    async def open_store(self) -> None:
        root = self.store_root()
        keyring = None
        if self.settings.encrypt_store:
            keyring = await anyio.to_thread.run_sync(self.daemon.hooks.keyring, self.daemon, KEYRING_PURPOSE)
            if keyring is None:
                self.log.warning("no keyring for purpose %r (is the keys plugin installed and enabled?): "
                                 "invoices in %s are stored in PLAINTEXT", KEYRING_PURPOSE, root)
        else:
            self.log.warning("billing.encrypt_store is false: invoices in %s are stored in PLAINTEXT", root)
        store = InvoiceStore(root, keyring)
        register = getattr(keyring, "register_rewrap_source", None)
        if register is not None:
            # `meshd keys rewrap` then moves the sealed invoices to the latest key version too.
            register("billing-invoices", lambda ring: store.rewrap(ring.rewrap))
        sealed = await anyio.to_thread.run_sync(store.seal_existing)
        if sealed:
            self.log.info("invoice store %s encrypted with the region keyring: %d documents sealed", root, sealed)
        self._store = store

    async def start(self) -> None:
        if not self.settings.enabled:
            self.state, self.detail = "disabled", "no billing matrix configured"
            return
        try:
            self.files = load_files(self.settings, meters_of(self.daemon.config))
        except ConfigError as exc:  # validated at start already; a file changed underneath
            self.state, self.detail = "failed", str(exc)
            self.log.error("billing files are invalid: %s", exc)
            return
        try:
            await self.open_store()
        except (OSError, ValueError) as exc:
            self.state, self.detail = "failed", f"invoice store {self.store_root()}: {exc}"
            self.log.error("billing disabled: %s", self.detail)
            return
        try:
            kv = await self.daemon.transport.key_value(self.settings.numbers_bucket,
                                                      replicas=self.settings.numbers_replicas)
        except Exception as exc:  # no JetStream: billing cannot number invoices, the daemon runs on
            self.state, self.detail = "failed", f"invoice number bucket unavailable: {exc}"
            self.log.error("billing disabled: %s", self.detail)
            return
        prefixes = {key: e.invoice_prefix for key, e in self.files.matrix.entities.items()}
        self.issuer = Issuer(InvoiceNumbers(kv, stale_after=self.settings.claim_stale_after), self.store, prefixes,
                             self.daemon.region)
        self.state = "running"

    def reload(self) -> None:
        self.settings = self.daemon.plugin_config(SECTION)
        if self.settings.enabled:
            try:
                self.files = load_files(self.settings, meters_of(self.daemon.config))
            except ConfigError as exc:
                self.log.error("billing files are invalid, keeping the previous ones: %s", exc)

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "at_rest": self.store.mode,
                "issued": {kind: int(self.daemon.metrics.value("billing_documents_issued_total", type=kind))
                           for kind in ("invoice", "credit_note")}}

    # ------------------------------------------------------------ requests

    def _ready(self) -> tuple[BillingFiles, Issuer]:
        if self.files is None or self.issuer is None:
            raise Failure(503, "not_running", f"billing is {self.state}: {self.detail or 'starting'}")
        return self.files, self.issuer

    def _here(self, tenant_id: str, residency: str) -> None:
        jurisdiction = self.daemon.config.region_map.regions[self.daemon.region].jurisdiction
        if residency != jurisdiction:
            regions = [n for n, r in self.daemon.config.region_map.regions.items() if r.jurisdiction == residency]
            raise Failure(409, "wrong_jurisdiction",
                          f"tenant {tenant_id}: invoices are kept in {residency}, this region is in {jurisdiction}; "
                          f"issue them from {', '.join(regions) or 'a region of ' + residency}")

    async def invoice(self, tenant_id: str, period: str, now: datetime | None = None) -> dict[str, Any]:
        try:
            return await self._invoice(tenant_id, period, now or datetime.now(UTC))
        except Failure as exc:
            self.m_refused.labels(exc.code).inc()
            raise

    async def _invoice(self, tenant_id: str, period: str, now: datetime) -> dict[str, Any]:
        files, issuer = self._ready()
        directory = self.daemon.config.tenants
        if directory is None or tenant_id not in directory.tenants:
            raise Failure(400, "unknown_tenant", f"tenant {tenant_id!r} is not in the tenant directory")
        tenant = directory.tenants[tenant_id]
        self._here(tenant_id, tenant.residency)
        try:
            check_closed(period, now)
        except InvoiceError as exc:
            raise Failure(400, "bad_period", str(exc)) from None
        usage = await self.daemon.hooks.call("meshd_usage_totals", daemon=self.daemon, tenant=tenant_id,
                                             period=period)
        if usage is None:
            raise Failure(503, "no_usage", "no plugin answers usage totals (is metering enabled?)")
        if "error" in usage:
            raise Failure(503, "no_usage", f"usage: {usage['error']}")
        adjustments = await self._adjustments(tenant_id, tenant.lang or self.daemon.config.daemon.lang, period)
        try:
            doc = compute(tenant_id, tenant, period, usage_values(usage), files, adjustments)
        except InvoiceError as exc:
            code = "incomplete_usage" if exc.field.startswith("usage") else "not_configured"
            raise Failure(503 if code == "incomplete_usage" else 400, code, str(exc)) from None
        return await self._issue(issuer, doc)

    async def _adjustments(self, tenant_id: str, lang: str, period: str) -> list[InvoiceAdjustment]:
        """Every plugin's adjustments for the invoice. Called through pluggy itself, not the isolating
        facade: an invoice issued without a plugin's service credit would lose it for good, so a
        plugin that fails refuses the invoice (retry once it is fixed) instead."""
        out: list[InvoiceAdjustment] = []
        try:
            results = self.daemon.hooks.pm.hook.meshd_invoice_adjustments(
                daemon=self.daemon, tenant=tenant_id, period=period, lang=lang)
            for result in results:
                if inspect.isawaitable(result):
                    result = await result
                items = list(result or ())
                bad = [i for i in items if not isinstance(i, InvoiceAdjustment)]
                if bad:
                    raise TypeError(f"returned {type(bad[0]).__name__}, not InvoiceAdjustment")
                out += items
        except Exception as exc:
            raise Failure(503, "adjustments_failed",
                          f"tenant {tenant_id}: a plugin's invoice adjustments failed ({type(exc).__name__}: "
                          f"{exc}); nothing was issued") from None
        return out

    async def _issue(self, issuer: Issuer, doc: dict[str, Any]) -> dict[str, Any]:
        try:
            issued, new = await issuer.issue(doc)
        except Busy as exc:
            raise Failure(409, "busy", str(exc)) from None
        except Immutable as exc:
            raise Failure(409, "immutable", str(exc)) from None
        except KeptElsewhere as exc:
            raise Failure(409, "kept_elsewhere", str(exc)) from None
        except TransportError as exc:  # the number bucket did not answer: nothing was issued, retry later
            raise Failure(503, "numbers_unavailable", f"invoice number bucket unavailable: {exc}") from None
        if new:
            self.m_issued.labels(issued["type"]).inc()
            self.log.info("issued %s %s (tenant %s, %s)", issued["type"], issued["number"],
                          issued["customer"]["tenant"], issued["period"])
        return {"issued": new, "document": issued}

    async def credit(self, number: str, reason: str) -> dict[str, Any]:
        try:
            files, issuer = self._ready()
            invoice = self._find(files, number)
            self._here(invoice["customer"]["tenant"], invoice["residency"])
            try:
                note = credit_note(invoice, reason)
            except InvoiceError as exc:
                raise Failure(400, "bad_request", str(exc)) from None
            return await self._issue(issuer, note)
        except Failure as exc:
            self.m_refused.labels(exc.code).inc()
            raise

    # ------------------------------------------------------------ what this region bills, audits, reports

    def billed_here(self) -> list[str]:
        """The tenants this region invoices: those whose residency is its jurisdiction, billed on a plan."""
        jurisdiction = self.daemon.config.region_map.regions[self.daemon.region].jurisdiction
        directory = self.daemon.config.tenants
        tenants = directory.tenants if directory is not None else {}
        return sorted(t for t, tenant in tenants.items() if tenant.residency == jurisdiction and tenant.plan)

    def documents(self) -> list[dict[str, Any]]:
        """Every invoice and credit note this region keeps, in number order per seller entity."""
        files, _ = self._ready()
        out = []
        for entity in files.matrix.entities:
            for number in self.store.numbers(entity):
                doc = self.store.get(entity, number)
                if doc is not None:
                    out.append(doc)
        return out

    async def audit(self, period: str, now: datetime | None = None) -> dict[str, Any]:
        """Metered totals against invoiced quantities, per tenant and meter, for ``period``.

        Every difference is listed: a meter whose invoiced ``used`` is not the
        metered total now, a tenant billed here with usage but no invoice, an
        invoice whose usage cannot be read. Credit notes change no quantity.
        """
        try:
            check_closed(period, now or datetime.now(UTC))
        except InvoiceError as exc:
            raise Failure(400, "bad_period", str(exc)) from None
        invoices = {d["customer"]["tenant"]: d for d in self.documents()
                    if d["type"] == "invoice" and d["period"] == period}
        differences: list[dict[str, Any]] = []
        checked = 0
        for tenant_id in sorted(set(self.billed_here()) | set(invoices)):
            usage = await self.daemon.hooks.call("meshd_usage_totals", daemon=self.daemon, tenant=tenant_id,
                                                 period=period)
            if usage is None or "error" in usage:
                differences.append({"tenant": tenant_id, "meter": None, "problem": "usage_unreadable",
                                    "detail": (usage or {}).get("error", "no plugin answers usage totals")})
                continue
            try:
                metered = usage_values(usage)
            except InvoiceError as exc:
                differences.append({"tenant": tenant_id, "meter": None, "problem": "usage_incomplete",
                                    "detail": str(exc)})
                continue
            invoice = invoices.get(tenant_id)
            if invoice is None:
                if any(metered.values()):
                    differences.append({"tenant": tenant_id, "meter": None, "problem": "not_invoiced",
                                        "detail": f"usage metered in {period} but no invoice kept here"})
                continue
            checked += 1
            invoiced = {line["meter"]: Decimal(line["used"]) for line in invoice["lines"] if line["kind"] == "overage"}
            for meter in sorted(set(invoiced) | {m for m, v in metered.items() if v}):
                got, billed = metered.get(meter, Decimal(0)), invoiced.get(meter)
                if billed is None:
                    # Metered but not on the invoice: fine when the plan bills no overage for it.
                    continue
                if got != billed:
                    differences.append({"tenant": tenant_id, "meter": meter, "problem": "quantity",
                                        "invoice": invoice["number"], "metered": str(got), "invoiced": str(billed),
                                        "difference": str(got - billed)})
        return {"period": period, "region": self.daemon.region, "invoices_checked": checked,
                "differences": differences}

    def _find(self, files: BillingFiles, number: str) -> dict[str, Any]:
        for key, entity in files.matrix.entities.items():
            if number.startswith(entity.invoice_prefix) and number[len(entity.invoice_prefix):].isdigit():
                found = self.store.get(key, number)
                if found is not None and found.get("type") == "invoice":
                    return found
        raise Failure(404, "unknown_invoice", f"invoice {number!r} is not kept in this region")
