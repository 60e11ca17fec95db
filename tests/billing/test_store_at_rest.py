"""Invoices at rest: sealed with the region's ``invoices`` keyring, a plaintext store sealed at the next start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd.cli import main
from meshd.plugins import Hooks
from meshd.testing import running_daemons
from meshd_plugins.audit.checks import builtin_checks
from meshd_plugins.billing.store import Immutable, InvoiceStore, StoreLocked, digest

from .test_billing_daemon import OTHER_PLUGINS, configs, last_month, plugin

pytestmark = [pytest.mark.anyio, pytest.mark.nats]
WITH_KEYS = [p for p in OTHER_PLUGINS if p != "keys"]


def rest_check(daemon: Any) -> Any:
    return next(c for c in builtin_checks() if c.id == "rest.invoices_encrypted").run(daemon)


async def issue(daemons: dict[str, Any], tenant: str, period: str) -> dict[str, Any]:
    """An invoice from eu-west-1, once every EU region answers usage totals (no partial invoice is made)."""
    with anyio.fail_after(20):
        for d in daemons.values():
            while not (plugin(d, "metering").ingestor and plugin(d, "metering").ingestor.running):
                await anyio.sleep(0.02)
    daemon = daemons["eu-west-1"]
    return (await plugin(daemon, "billing").invoice(tenant, period))["document"]  # type: ignore[no-any-return]


async def test_plaintext_store_is_sealed_at_start_and_every_reader_still_reads_it(
        tmp_path: Path, nats_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    period, _ = last_month()
    paths = configs(tmp_path, nats_server.url, {})
    west = {r: paths[r] for r in ("eu-west-1", "eu-central-1")}  # usage totals need every EU region
    async with running_daemons(west, blocked=OTHER_PLUGINS) as daemons:  # no keys plugin: plaintext, and said so
        first = await issue(daemons, "bistro-fr", period)
        billing = plugin(daemons["eu-west-1"], "billing")
        assert billing.status()["at_rest"] == "plaintext"
        result = rest_check(daemons["eu-west-1"])
        assert result.status == "fail" and "plaintext" in result.detail and result.evidence["at_rest"] == "plaintext"
    stored = billing.store.path("meshd-eu", first["number"])
    assert b"bistro-fr" in stored.read_bytes()

    async with running_daemons(west, blocked=WITH_KEYS) as daemons:
        billing = plugin(daemons["eu-west-1"], "billing")
        assert billing.status()["at_rest"] == "keyring"
        raw = stored.read_bytes()
        assert b"bistro-fr" not in raw and json.loads(raw)["sealed"] == "invoice/v1"
        assert stored.stat().st_mode & 0o777 == 0o400
        assert billing.store.get("meshd-eu", first["number"]) == first, "sealing changes no byte of the document"
        second = await issue(daemons, "acme-eu", period)
        assert b"acme-eu" not in billing.store.path("meshd-eu", second["number"]).read_bytes()
        result = rest_check(daemons["eu-west-1"])
        assert result.status == "pass", result.detail
        assert result.evidence["plaintext_documents"] == [] and result.evidence["at_rest"] == "keyring"
        # a rerun of an issued month still finds its sealed invoice, and a different document is refused
        assert (await billing.invoice("bistro-fr", period))["issued"] is False
        with pytest.raises(Immutable):
            billing.store.put("meshd-eu", {**first, "total": "0.00"})
        # a sealed document copied under another number does not open: its number is bound to the ciphertext
        copy = billing.store.path("meshd-eu", "EU-000099")
        copy.write_bytes(raw)
        with pytest.raises(StoreLocked, match="EU-000099"):
            billing.store.get("meshd-eu", "EU-000099")
        copy.unlink()

    # the CLI reads the sealed store beside the daemon, through the keys plugin's hook
    capsys.readouterr()
    code = main(["billing", "revenue", "--period", period, "--currency", "EUR", "--json",
                 "--config", str(paths["eu-west-1"])])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["count"] == 2


def test_a_sealed_store_without_its_keyring_names_the_file(tmp_path: Path) -> None:
    from meshd.testing import write_federation

    config_path = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:1")["eu-west-1"]
    hooks = Hooks.load()
    config = hooks.load_config(config_path)
    ring = hooks.pm.get_plugin("keys").manager_for(config, hooks, short_lived=True).keyring("invoices")
    doc = {"number": "EU-000001", "type": "invoice", "customer": {"tenant": "t"}, "total": "1.00"}
    sealed = InvoiceStore(tmp_path / "store", ring)
    sealed.put("meshd-eu", doc)
    assert digest(sealed.get("meshd-eu", "EU-000001") or {}) == digest(doc)
    with pytest.raises(StoreLocked, match=r"store/meshd-eu/EU-000001\.json is encrypted"):
        InvoiceStore(tmp_path / "store").get("meshd-eu", "EU-000001")
    assert list(sealed.plaintext_files()) == []

    # `meshd keys rewrap` moves sealed invoices to the latest key version, and they still open
    ring.rotate()
    path = sealed.path("meshd-eu", "EU-000001")
    assert json.loads(path.read_text())["ciphertext"].startswith("meshd:v1:")
    assert sealed.rewrap(ring.rewrap) == 1 and sealed.rewrap(ring.rewrap) == 0
    assert json.loads(path.read_text())["ciphertext"].startswith(f"meshd:v{ring.latest_version}:")
    assert digest(sealed.get("meshd-eu", "EU-000001") or {}) == digest(doc)
    assert path.stat().st_mode & 0o777 == 0o400
