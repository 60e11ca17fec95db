"""Encryption in transit: the bus connection and the partner API listener."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from meshd.auditcheck import AuditCheck, CheckResult, Severity

from .facts import failed, file_facts, nats_client, not_applicable, others_may_read, passed, plugin, redact_url, section

if TYPE_CHECKING:
    from meshd.daemon import Daemon

TLS_SCHEMES = ("tls://", "wss://")


def nats_tls(daemon: Daemon) -> CheckResult:
    """TLS on the live connection (the server requires it) and the client verifying the server's certificate."""
    cfg = daemon.config.daemon.nats
    nc: Any = nats_client(daemon)
    info: dict[str, Any] = dict(getattr(nc, "_server_info", None) or {}) if nc is not None else {}
    connected = getattr(nc, "connected_url", None)
    evidence = {
        "servers": [redact_url(s) for s in cfg.servers],
        "tls": None if cfg.tls is None else {"ca_file": str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                                             "client_cert": cfg.tls.cert_file is not None,
                                             "verify": cfg.tls.verify},
        "connected_url": redact_url(connected.geturl()) if connected is not None else None,
        "server_tls_required": info.get("tls_required"),
        "server_tls_verify": info.get("tls_verify"),
        "server": info.get("server_name"),
    }
    if nc is None:
        return not_applicable("the daemon's transport is not NATS", **evidence)
    plain = [redact_url(s) for s in cfg.servers if not s.startswith(TLS_SCHEMES)]
    if not info.get("tls_required"):
        return failed(f"the NATS connection is not encrypted: server {evidence['server'] or '?'} does not require "
                      f"TLS and nats.tls is {'set' if cfg.tls else 'not set'}", **evidence)
    if cfg.tls is not None and not cfg.tls.verify:
        return failed("nats.tls.verify is false: the NATS server's certificate is not verified", **evidence)
    if plain and cfg.tls is None:
        return failed(f"nats.servers {', '.join(plain)} are not tls:// and nats.tls is not set", **evidence)
    return passed("the NATS connection uses TLS and verifies the server certificate", **evidence)


def _certificate_facts(path: Any) -> dict[str, Any]:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(open(path, "rb").read())
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read the certificate: {exc}"}
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(), "serial": format(cert.serial_number, "x"),
            "expired": cert.not_valid_after_utc < dt.datetime.now(dt.UTC)}


def partner_api_tls(daemon: Daemon) -> CheckResult:
    settings = section(daemon, "partners")
    if plugin(daemon, "partners") is None or settings is None:
        return not_applicable("the partners plugin is not loaded")
    if not settings.enabled:
        return not_applicable("this region does not serve the partner API (partners.enabled is false)")
    runtime = getattr(plugin(daemon, "partners"), "runtime", None)
    evidence: dict[str, Any] = {"listen": settings.listen, "port": getattr(runtime, "port", None) or settings.port,
                                "state": getattr(runtime, "state", None)}
    if settings.tls is None:
        return failed(f"the partner API listens on {settings.listen}:{evidence['port']} without TLS "
                      "(partners.tls is not set)", **evidence)
    cert = _certificate_facts(settings.tls.cert_file)
    evidence.update(certificate=cert, key_file=file_facts(settings.tls.key_file))
    if "error" in cert:
        return failed(f"partners.tls.cert_file {settings.tls.cert_file}: {cert['error']}", **evidence)
    if cert["expired"]:
        return failed(f"the partner API certificate expired on {cert['not_after']}", **evidence)
    if others_may_read(settings.tls.key_file):
        return failed(f"partners.tls.key_file {settings.tls.key_file} has mode {evidence['key_file']['mode']}: "
                      "others may read the TLS private key", **evidence)
    return passed(f"the partner API serves TLS with a certificate valid until {cert['not_after']}", **evidence)


CHECKS = [
    AuditCheck("transit.nats_tls", "NATS connections use TLS with certificate verification", Severity.CRITICAL,
               nats_tls),
    AuditCheck("transit.partner_api_tls", "The partner API listener uses TLS", Severity.HIGH, partner_api_tls),
]
