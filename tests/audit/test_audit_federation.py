"""The audit on a real federation: nats-server with TLS and per-region users, real daemons.

A hardened setup passes every check; each deliberately weakened setting then
fails exactly the checks it should, in the controls of each framework that
those checks evidence, and the framework scores drop accordingly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshd.natsserver import NatsServer, authorization_block, free_port, render_config
from meshd.testing import deep_merge, running_daemons, until, write_federation
from meshd_plugins.audit.checks.facts import plugin
from meshd_plugins.audit.frameworks import load_frameworks
from meshd_plugins.keys.configsecrets import encrypt_config_value
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

pytestmark = pytest.mark.anyio

REGIONS = ["eu-west-1", "eu-central-1"]
FEDERATION = "audit"
KEYS_FAST = {"check_interval": "0.2s", "announce_interval": "0.5s"}
AUDIT_TIMEOUT = 30
DR_CONFIG = {"rtt_fallback": True, "regions": {"eu-west-1": {"pair": "eu-central-1"},
                                              "eu-central-1": {"pair": "eu-west-1"}}}
ALERTS_FAST = {"delivery": {"backoff_initial": 0.1, "backoff_max": 0.5, "rate_limited_min": 1, "broken_after": 1},
               "dedup": {"lease": 2, "poll": 0.1, "fence_grace": 3, "stagger": 0.5}}


def alert_routes(port: int) -> dict[str, Any]:
    """The dead man's switch to a heartbeat receiver that answers; everything else to a chat room."""
    return {"route": {"receiver": "chat", "group_by": ["alertname", "region"], "group_wait": "0s",
                      "group_interval": "1s", "repeat_interval": "1h",
                      "routes": [{"matchers": ['alertname="DeadMansSwitch"'], "receiver": "heartbeat",
                                  "group_wait": "0s", "repeat_interval": "1m"}]},
            "receivers": [{"name": "heartbeat", "urls": [f"json://127.0.0.1:{port}/heartbeat"]},
                          {"name": "chat", "urls": [f"json://127.0.0.1:{port}/chat"]}]}


TENANTS = """\
tenants:
  acme-eu: {residency: EU, home: eu-west-1, country: DE, currency: EUR, plan: business}
  bistro-fr: {residency: EU, country: FR, currency: EUR, plan: starter}
"""
ETC = Path(__file__).resolve().parents[2] / "etc"
# The meters the shipped billing matrix prices, so that billing runs and its invoice store is audited.
METERS = {"api_requests": {"kind": "COUNT"}, "storage_gb_hours": {"kind": "SUM"}, "active_users": {"kind": "UNIQUE_COUNT"}}
BILLING = {"matrix": str(ETC / "billing_matrix.yaml"), "tax_rates": str(ETC / "tax_rates.yaml"),
           "fx_rates": str(ETC / "fx_rates.yaml")}
FRAMEWORKS = load_frameworks()
F = TypeVar("F", bound="Federation")


# ---------------------------------------------------------------- PKI


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_pki(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost, signed by it (PEM files, keys 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("meshd test CA")).issuer_name(_name("meshd test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


# ---------------------------------------------------------------- the federation


class HeartbeatReceiver:
    """An HTTP endpoint that records what the alerts plugin posts to it (the dead man's switch's receiver)."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Encrypt(str):
    """A config value to write ``!encrypted`` under the region's secrets keyring."""


@dataclass
class Federation:
    """nats-server (TLS, one user per region) and the daemons' config files: hardened unless weakened.

    Hardened: NATS over TLS verified against the test CA; each region's NATS
    password ``!encrypted`` under its own secrets keyring and no plaintext
    password file left (``meshd init`` writes one per region: removed); the
    metering ledger and the invoice store encrypted by the region's keyring; keys announced to the
    federation; a DR pair for each region; the dead man's switch routed to a
    receiver that answers; a failover drill on record (written once the
    daemons run).
    """

    root: Path
    binary: str
    heartbeat: HeartbeatReceiver
    tls: bool = True
    broad_user: bool = False
    keep_password_files: bool = False
    passwords: dict[str, str] = field(default_factory=lambda: {r: secrets.token_urlsafe(18) for r in REGIONS})
    server: NatsServer | None = None
    configs: dict[str, Path] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_result: dict[str, Any] = field(default_factory=dict)

    def setup(self) -> Federation:
        self.pki = write_pki(self.root / "pki")
        self.port, self.monitor = free_port(), free_port()
        tenants = self.root / "tenants.yaml"
        tenants.write_text(TENANTS)
        self.configs = write_federation(self.root, REGIONS, self.url, federation=FEDERATION)
        self.dir = next(iter(self.configs.values())).parent
        (self.dir / "dr_config.yaml").write_text(yaml.safe_dump(DR_CONFIG))
        (self.dir / "alert_routes.yaml").write_text(yaml.safe_dump(alert_routes(self.heartbeat.port)))
        for region, path in self.configs.items():
            nats: dict[str, Any] = {"servers": [self.url], "user": region, "password": Encrypt(self.passwords[region])}
            if self.tls:
                nats["tls"] = {"ca_file": str(self.pki["ca"])}
            self.data[region] = deep_merge(yaml.safe_load(path.read_text()), {
                "nats": nats, "keys": KEYS_FAST, "tenants": str(tenants), "alerts": ALERTS_FAST,
                "metering": {"meters": METERS}, "billing": BILLING})
            self.write_config(region)
        if not self.keep_password_files:
            for leftover in (self.dir / "secrets").glob("*.nats-password"):
                leftover.unlink()
        self.write_server_config()
        return self

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    def write_config(self, region: str) -> None:
        """The region's config file from ``self.data``, every :class:`Encrypt` value written ``!encrypted``."""
        ring = self.keys(region).keyring("secrets")
        lines: dict[str, str] = {}

        def mark(node: Any) -> Any:
            if isinstance(node, Encrypt):
                placeholder = f"@ENCRYPTED{len(lines)}@"
                lines[placeholder] = encrypt_config_value(ring, str(node))
                return placeholder
            if isinstance(node, dict):
                return {k: mark(v) for k, v in node.items()}
            return node

        text = yaml.safe_dump(mark(self.data[region]), sort_keys=False)
        for placeholder, line in lines.items():
            text = text.replace(f"'{placeholder}'", line).replace(placeholder, line)
        self.configs[region].write_text(text)

    def patch(self, region: str, patch: dict[str, Any]) -> None:
        self.data[region] = deep_merge(self.data[region], patch)
        self.write_config(region)

    def write_server_config(self) -> Path:
        """The server's config where ``meshd init`` put it (nats-server.conf next to the regions' configs)."""
        extra = {"auditor": ("broad-" + secrets.token_urlsafe(8), {"publish": [">"], "subscribe": [">"]})} \
            if self.broad_user else None
        text = render_config(name="n1", host="127.0.0.1", port=self.port, monitor_port=self.monitor,
                             store_dir=self.root / "jetstream",
                             authorization=authorization_block(FEDERATION, self.passwords, extra_users=extra))
        if self.tls:
            pki = self.pki
            text += (f'tls {{ cert_file: "{pki["cert"]}", key_file: "{pki["key"]}", ca_file: "{pki["ca"]}", '
                     "timeout: 5 }\n")
        conf = self.dir / "nats-server.conf"
        conf.write_text(text)
        conf.chmod(0o600)
        return conf

    def start_server(self) -> NatsServer:
        self.server = NatsServer(self.root, name="n1", port=self.port, monitor_port=self.monitor,
                                 config_file=self.dir / "nats-server.conf", binary=self.binary).start()
        return self.server

    def state_dir(self, region: str) -> Path:
        return self.dir / "state" / region

    def keys(self, region: str, clock: Any = None) -> KeyManager:
        kwargs = {"clock": clock} if clock is not None else {}
        return KeyManager(region=region, state_dir=self.state_dir(region), cfg=KeysConfig(), **kwargs)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


async def deadman_sent(daemon: Any) -> bool:
    """Whether this region's alerts outbox holds a delivered dead man's switch (regions share the
    delivery work, so which region sends which notification is theirs to settle)."""
    runtime = daemon.hooks.pm.get_plugin("alerts").runtime
    rows = await runtime.outbox.run(runtime.outbox.sync.recent, 100)
    return any(r.outcome == "sent" and "DeadMansSwitch" in str(r.content) for r in rows)


async def record_drills(daemons: dict[str, Any]) -> None:
    """A failover drill in each region's failover audit log, as an operator request records it."""
    for region, daemon in daemons.items():
        engine = daemon.hooks.pm.get_plugin("failover").engine
        await until(lambda engine=engine: engine.audit is not None, what=f"{region}'s failover audit log")
        assert await engine.audit_append("request", {"region": region, "action": "failover", "by": region,
                                                     "reason": "quarterly DR drill", "force": False})


# ---------------------------------------------------------------- running the audit


async def federated_audit(daemon: Any) -> dict[str, Any]:
    """The merged audit as ``meshd audit --json`` gets it: asked of one daemon, which asks every region over the bus."""
    plugin = daemon.hooks.pm.get_plugin("audit")
    await until(lambda: plugin.runtime is not None, what="the audit plugin running")
    with anyio.fail_after(AUDIT_TIMEOUT):
        result: dict[str, Any] = await plugin.runtime.federate()
    return result


def control_scores(rows: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float | None, str]]]:
    """The documented formula (docs/audit.md), computed here independently: per framework, per control,
    (passed results / counted results, status); not_applicable is not counted, not_assessed is never passed."""
    out: dict[str, dict[str, tuple[float | None, str]]] = {}
    for fid, framework in FRAMEWORKS.items():
        out[fid] = {}
        for control in framework.controls:
            mine = [r for r in rows if r["id"] in control.checks and r["status"] != "not_applicable"]
            passed = sum(1 for r in mine if r["status"] == "pass")
            failed = any(r["status"] in ("fail", "error") for r in mine)
            status = "fail" if failed else "not_assessed" if (not mine or any(
                r["status"] == "not_assessed" for r in mine)) else "pass"
            out[fid][control.id] = (passed / len(mine) if mine else None, status)
    return out


def framework_score(controls: dict[str, tuple[float | None, str]]) -> float | None:
    scored = [s for s, _ in controls.values() if s is not None]
    return sum(scored) / len(scored) if scored else None


def failing(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["id"], r["region"]) for r in rows if r["status"] in ("fail", "error")}


@contextlib.contextmanager
def with_heartbeat(kind: type[F], root: Path, binary: str) -> Iterator[F]:
    """A federation of ``kind`` and its heartbeat receiver, both stopped at exit."""
    heartbeat = HeartbeatReceiver()
    fed = kind(root, binary, heartbeat)
    try:
        yield fed
    finally:
        fed.stop()
        heartbeat.close()


@pytest.fixture
def federation(tmp_path: Path, nats_binary: str) -> Iterator[Federation]:
    with with_heartbeat(Federation, tmp_path, nats_binary) as fed:
        yield fed


# ---------------------------------------------------------------- the tests


ENVIRONMENT = {("continuity.replicas", r) for r in REGIONS} | (
    {("host.not_root", r) for r in REGIONS} if os.geteuid() == 0 else set())
"""What the test machine cannot harden: one nats-server process (the replicas check wants three NATS
nodes and R3 streams) and, when the tests run as root, the daemons' uid."""

WEST = "eu-west-1"
BOTH = tuple(REGIONS)


def unreadable_metering_keyring(fed: Federation) -> None:
    """eu-west-1's metering keyring cannot be read: the keys plugin hands metering none, the ledger is plaintext."""
    ring = fed.state_dir(WEST) / "keys" / "metering.json"
    ring.write_text("not a keyring")
    ring.chmod(0o600)


def overdue_key(fed: Federation) -> None:
    long_ago = time.time() - 100 * 86400
    fed.keys(WEST, clock=lambda: long_ago).keyring("metering")  # made 100 days ago
    fed.patch(WEST, {"keys": {"auto_rotate_period": 0}})         # ...and rotated by hand only: overdue


def tamper_audit_log(fed: Federation) -> None:
    log = fed.state_dir(WEST) / "failover" / "audit.log"
    data = bytearray(log.read_bytes())
    at = data.index(b"quarterly DR drill")
    data[at] = ord("Q")
    log.write_bytes(bytes(data))


def broken_receiver(fed: Federation) -> None:
    """The dead man's switch also goes to a chat room whose endpoint no longer listens."""
    routes = alert_routes(fed.heartbeat.port)
    routes["route"]["routes"][0]["continue"] = True
    routes["route"]["routes"].append({"matchers": ['alertname="DeadMansSwitch"'], "receiver": "chat",
                                      "group_wait": "0s", "repeat_interval": "1m"})
    with socket.socket() as closed:  # bound, never listening, closed: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    routes["receivers"][1]["urls"] = [f"json://127.0.0.1:{port}/chat"]
    (fed.dir / "alert_routes.yaml").write_text(yaml.safe_dump(routes))


async def receiver_broken(daemons: dict[str, Any]) -> None:
    def broken() -> bool:
        return all("chat" in d.hooks.pm.get_plugin("alerts").runtime.delivery.broken for d in daemons.values())

    await until(broken, what="the chat receiver found broken in every region")


@dataclass(frozen=True)
class Weakening:
    name: str
    expected: frozenset[tuple[str, str]]
    """(check id, region) pairs that fail with it, on top of the hardened run."""
    before: Any = None
    """Called with the Federation once its files exist, before anything starts."""
    after: Any = None
    """Called with the Federation once the daemons run and the drills are recorded."""
    running: Any = None
    """Awaited with the daemons once they run: waits for the weakened setting to show."""
    options: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[tuple[str, Any], ...] = ()


def fails(check: str, *regions: str) -> frozenset[tuple[str, str]]:
    return frozenset((check, r) for r in regions)


WEAKENINGS = [
    Weakening("tls_off", fails("transit.nats_tls", *BOTH), options={"tls": False}),
    # meshd init leaves each region's NATS password in secrets/<region>.nats-password beside the configs.
    Weakening("plaintext_password_file", fails("rest.config_secrets_encrypted", *BOTH),
              options={"keep_password_files": True}),
    # Every region sees every keyring of the federation: all of them report eu-west-1's overdue key.
    Weakening("overdue_key", fails("keys.rotation", *BOTH), before=overdue_key),
    # The way a real ledger ends up plaintext: the keyring it needs cannot be read. That is a key
    # management failure too, so the region's keys.rotation fails with it.
    Weakening("unencrypted_ledger", fails("rest.ledger_encrypted", WEST) | fails("keys.rotation", WEST),
              before=unreadable_metering_keyring),
    Weakening("unencrypted_invoice_store", fails("rest.invoices_encrypted", WEST),
              before=lambda fed: fed.patch(WEST, {"billing": {"encrypt_store": False}})),
    # One server config for the federation: every region's check reads it.
    Weakening("broad_nats_user", fails("access.nats_broad_publish", *BOTH), options={"broad_user": True}),
    # The drill is recorded in the log that no longer verifies: it is no longer evidence of a drill either.
    # Each region delivers its own dead man's switch, so each finds the chat room broken.
    Weakening("broken_alert_receiver", fails("logging.receivers", *BOTH), before=broken_receiver,
              running=receiver_broken),
    Weakening("tampered_audit_log", fails("logging.audit_chains", WEST) | fails("continuity.failover_drill", WEST),
              after=tamper_audit_log),
]


def stores_settled(daemon: Any) -> bool:
    """The metering ledger and the invoice store are open, or will not open (disabled, locked, failing)."""
    metering = getattr(plugin(daemon, "metering"), "runtime", None)
    billing = getattr(plugin(daemon, "billing"), "runtime", None)
    return ((metering is None or metering.ledger is not None or metering.state != "starting")
            and (billing is None or billing.state != "starting"))


async def audited(fed: Federation, weakening: Weakening | None = None,
                  down: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    fed.setup()
    if weakening is not None and weakening.before is not None:
        weakening.before(fed)
    fed.start_server()
    plugins = weakening.plugins if weakening is not None else ()
    configs = {r: c for r, c in fed.configs.items() if r not in down}
    async with running_daemons(configs, extra_plugins=plugins) as ds:
        for d in ds.values():
            await until(lambda d=d: d.transport.nc.is_connected, what=f"{d.region} connected")
            # The stores open in the plugins' own tasks; an audit while one still starts reads "not open".
            await until(lambda d=d: stores_settled(d), what=f"{d.region} opened its ledger and invoice store")
        await record_drills(ds)
        for region, daemon in ds.items():
            await until(lambda daemon=daemon: deadman_sent(daemon), what=f"{region} delivered its dead man's switch")
        if weakening is not None and weakening.after is not None:
            weakening.after(fed)
        if weakening is not None and weakening.running is not None:
            await weakening.running(ds)
        result = await federated_audit(ds[WEST])
    assert_scored_as_documented(result)
    fed.last_result = result
    rows: list[dict[str, Any]] = result["checks"]
    return rows


def assert_scored_as_documented(result: dict[str, Any]) -> None:
    """The plugin's control and framework scores are the documented formula's (computed here independently)."""
    expected = control_scores(result["checks"])
    for fw in result["frameworks"]:
        for control in fw["controls"]:
            score, status = expected[fw["id"]][control["id"]]
            assert control["status"] == status, (fw["id"], control["id"])
            assert control["score"] == (None if score is None else pytest.approx(score, abs=1e-4))
        assert fw["score"] == pytest.approx(framework_score(expected[fw["id"]]), abs=1e-4), fw["id"]


async def test_a_hardened_federation_passes_every_check_it_can(federation: Federation) -> None:
    rows = await audited(federation)
    assert failing(rows) == ENVIRONMENT, [r for r in rows if r["status"] != "pass"]
    statuses = {(r["id"], r["region"]): r["status"] for r in rows}
    # Not applicable only where the feature is off: no partner API, no systemd on the test host.
    assert {k for k, v in statuses.items() if v == "not_applicable"} <= {
        (c, r) for r in REGIONS for c in ("transit.partner_api_tls", "access.api_keys_hashed", "host.systemd_exposure")}
    scores = control_scores([r for r in rows if (r["id"], r["region"]) not in ENVIRONMENT])
    for fid, controls in scores.items():
        assert all(status in ("pass", "not_assessed") for _, status in controls.values()), (fid, controls)
        assert framework_score(controls) == 1.0


@pytest.mark.parametrize("weakening", WEAKENINGS, ids=[w.name for w in WEAKENINGS])
async def test_each_weakened_setting_fails_exactly_its_checks_and_controls(
        tmp_path: Path, nats_binary: str, weakening: Weakening) -> None:
    heartbeat = HeartbeatReceiver()
    hardened_fed = Federation(tmp_path / "hardened", nats_binary, heartbeat)
    weak_fed = Federation(tmp_path / "weak", nats_binary, heartbeat, **weakening.options)
    try:
        hardened = await audited(hardened_fed)
        hardened_fed.stop()
        heartbeat.received.clear()
        weak = await audited(weak_fed, weakening)
    finally:
        hardened_fed.stop()
        weak_fed.stop()
        heartbeat.close()
    new = failing(weak) - failing(hardened)
    assert new == weakening.expected, [r for r in weak if (r["id"], r["region"]) in new | weakening.expected]
    assert failing(hardened) - failing(weak) == set()

    before, after = control_scores(hardened), control_scores(weak)
    failed_checks = {c for c, _ in weakening.expected}
    for fid, framework in FRAMEWORKS.items():
        touched = {c.id for c in framework.controls if failed_checks & set(c.checks)}
        for control in framework.controls:
            (old, old_status), (now, status) = before[fid][control.id], after[fid][control.id]
            if control.id not in touched:
                assert (now, status) == (old, old_status), (fid, control.id)
                continue
            # The documented drop: each newly failed result is one passed result less among the counted ones.
            counted = sum(1 for r in weak if r["id"] in control.checks and r["status"] != "not_applicable")
            lost = sum(1 for c, _ in weakening.expected if c in control.checks)
            assert status == "fail", (fid, control.id)
            assert now == pytest.approx(old - lost / counted), (fid, control.id)
        old_fw, new_fw = framework_score(before[fid]), framework_score(after[fid])
        assert old_fw is not None and new_fw is not None
        scored = len([s for s, _ in after[fid].values() if s is not None])
        drops = sum((before[fid][c][0] or 0.0) - (after[fid][c][0] or 0.0) for c in touched)
        assert old_fw - new_fw == pytest.approx(drops / scored), fid
        assert (new_fw < old_fw) == bool(touched), fid


def test_every_weakened_check_evidences_soc2_and_iso27001_controls() -> None:
    for weakening in WEAKENINGS:
        for check, _ in weakening.expected:
            for fid in ("soc2", "iso27001"):
                assert any(check in c.checks for c in FRAMEWORKS[fid].controls), (weakening.name, fid, check)


async def test_a_region_that_does_not_answer_is_named_and_its_controls_are_not_assessed(
        federation: Federation) -> None:
    down = "eu-central-1"
    rows = await audited(federation, down=(down,))
    result = federation.last_result
    assert result["regions"][WEST] == {"answered": True}
    assert result["regions"][down]["answered"] is False and result["missing"] == [down]
    theirs = [r for r in rows if r["region"] == down]
    assert theirs and all(r["status"] == "not_assessed" for r in theirs)
    # Never passed: every control that counted anything and failed nothing is not assessed, below 100 %.
    for fw in result["frameworks"]:
        for control in fw["controls"]:
            if control["status"] != "fail" and control["counted"]:
                assert control["status"] == "not_assessed", (fw["id"], control["id"])
                assert control["score"] < 1, (fw["id"], control["id"])
    # The report renders the live result: the silent region named, the failed controls with their checks.
    from meshd_plugins.audit.report import render_html, render_markdown

    markdown = render_markdown(result, "en")
    assert "## Regions that did not answer" in markdown and f"- **{down}**: " in markdown
    assert "| not assessed |" in markdown
    assert 'dir="rtl"' in render_html(result, "ar")
