"""The check ids the shipped framework mappings may name: the checks the audit plugin offers.

A mapping naming an id outside this catalogue, and outside the checks the
plugins actually offer, is a typo or a check that was removed: bad input.
"""

from __future__ import annotations

CHECK_IDS: frozenset[str] = frozenset({
    "transit.nats_tls", "transit.partner_api_tls",
    "rest.ledger_encrypted", "rest.invoices_encrypted", "rest.config_secrets_encrypted", "rest.kek_protected",
    "keys.rotation", "keys.retired_versions",
    "access.region_impersonation", "access.nats_broad_publish", "access.admin_token_mode", "access.api_keys_hashed",
    "residency.dr_targets", "residency.routes", "residency.placement",
    "logging.audit_chains", "logging.deadman", "logging.receivers",
    "continuity.replicas", "continuity.dr_pairs", "continuity.failover_drill",
    "host.not_root", "host.state_dir_modes", "host.systemd_exposure",
})

FRAMEWORK_IDS: tuple[str, ...] = ("soc2", "iso27001", "gdpr", "pipeda", "hipaa")
