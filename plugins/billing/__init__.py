"""The billing plugin: plans in six currencies, tax by date, invoices and credit notes from metered usage.

See docs/billing.md. The pure parts (money, tax, plans, invoice
computation) are plain modules usable without a daemon; the plugin class
wires them to the config, the bus and the CLI.
"""

from __future__ import annotations

from meshd import hookimpl

FEDERATION_FILES = ["tax_rates.yaml"]


class BillingPlugin:
    @hookimpl
    def meshd_federation_files(self) -> list[str]:
        return list(FEDERATION_FILES)
