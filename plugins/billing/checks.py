"""Cross-checks of a region's config for billing: its files, and every tenant it may have to invoice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshd.config import ConfigError, ConfigIssue
from meshd.yamlsource import YamlError, load_yaml

from .config import BillingConfig
from .invoice import BillingFiles
from .runtime import load_files, meters_of
from .tax import Customer, TaxError, jurisdiction_of


def check_config(config: Any, settings: BillingConfig) -> list[ConfigIssue]:
    if not settings.enabled:
        return []
    try:
        files = load_files(settings, meters_of(config))
    except ConfigError as exc:
        return list(exc.issues)
    if config.tenants is None:
        keypath = ("billing", "matrix")
        return [ConfigIssue(config.path, keypath, "billing needs the tenant directory: set tenants: (tenants.yaml)",
                            config.line_of(keypath))]
    if not isinstance(config.daemon.tenants, Path):
        # The live registry (tenants: {registry: kv}): tenants come and go at run time and are checked as
        # they are written (the partner API refuses an unknown plan or currency); an invoice refuses the rest.
        return []
    return check_tenants(config, files)


def check_tenants(config: Any, files: BillingFiles) -> list[ConfigIssue]:
    """Every tenant can be invoiced: its plan, currency, seller and tax jurisdiction are configured."""
    path = config.daemon.tenants
    try:
        source = load_yaml(path)
    except YamlError:
        source = None
    issues: list[ConfigIssue] = []
    matrix, taxes = files.matrix, files.taxes

    def issue(name: str, key: str, message: str) -> None:
        keypath = ("tenants", name, key)
        issues.append(ConfigIssue(path, keypath, message, source.line_of(keypath) if source else None,
                                  code="billing"))

    for name, tenant in config.tenants.tenants.items():
        if tenant.plan not in matrix.plans:
            issue(name, "plan", f"plan {tenant.plan!r} is not in {config.plugin('billing').matrix.name} "
                                f"(known: {', '.join(matrix.plans)})")
        if tenant.currency not in matrix.currencies:
            issue(name, "currency", f"currency {tenant.currency!r} is not invoiced (billing currencies: "
                                    f"{', '.join(matrix.currencies)})")
        if matrix.entity_for(tenant.residency) is None:
            issue(name, "residency", f"no seller entity bills jurisdiction {tenant.residency}")
        if not tenant.country:
            issue(name, "country", "billing needs the customer's country, for tax")
            continue
        try:
            _, j = jurisdiction_of(taxes, Customer(tenant.country, tenant.subdivision, tenant.vat_id))
        except TaxError as exc:
            issue(name, "subdivision" if tenant.subdivision else "country", str(exc))
            continue
        if tenant.vat_id and j.eu_vat:
            vat_id = tenant.vat_id.replace(" ", "").upper()
            member = taxes.jurisdictions.get(vat_id[:2])
            if member is None or not member.vat_id_ok(vat_id):
                issue(name, "vat_id", f"{tenant.vat_id!r} is not a well-formed EU VAT ID (it would be billed as "
                                      "a consumer, without reverse charge)")
    return issues
