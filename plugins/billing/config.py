"""The ``billing:`` section of a region's daemon config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from meshd.config import RelPath, StrictModel
from meshd.durations import Duration


class BillingConfig(StrictModel):
    """Plans, tax and FX files, where invoices are kept, and the invoice-number bucket."""

    matrix: RelPath | None = None
    """billing_matrix.yaml (plans, prices, seller entities); none: the plugin stays idle."""
    tax_rates: RelPath = Path("tax_rates.yaml")
    fx_rates: RelPath = Path("fx_rates.yaml")
    store_dir: RelPath | None = None
    """Issued invoices and credit notes; default ``<state_dir>/billing``. Keep it on this region's disks."""
    encrypt_store: bool = True
    """Seal stored documents with the region's ``invoices`` keyring (keys plugin); false keeps them plaintext."""
    numbers_bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "meshd_invoice_numbers"
    numbers_replicas: int = Field(default=1, ge=1, le=5)
    """JetStream KV replicas of the number chain: 3 on a production cluster."""
    claim_stale_after: Duration = Field(default=600.0, gt=0)
    """A claim on a tenant's month older than this, with no number, belongs to a run that died."""

    @property
    def enabled(self) -> bool:
        return self.matrix is not None
