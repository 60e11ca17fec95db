"""A hardened federation passes every check of every region, and every framework scores 100 %.

Everything real: a 3-node nats-server cluster over verified TLS whose nodes
are named and tagged after their regions, one least-privilege NATS user per
region, `meshd run` daemons as the unprivileged user 65534 (nobody), secrets
`!encrypted`, the metering ledger and the invoice store sealed by the keys
plugin, keys inside their rotation period, the dead man's switch delivered
to a live HTTP receiver, a fresh failover drill in each region's signed
audit log, the partner API over TLS on the KV tenant registry, and the shipped systemd unit rated by
the real `systemd-analyze`. The audit is asked through `meshd audit --json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd.cli import main
from meshd.identity import Signer, load_private_key
from meshd.natsserver import NatsCluster, TlsFiles, authorization_block, free_port
from meshd.testing import until
from meshd_plugins.audit.catalog import CHECK_IDS
from meshd_plugins.failover.audit import AuditLog

from .test_audit_federation import (
    FEDERATION,
    REGIONS,
    Federation,
    HeartbeatReceiver,
    control_scores,
    framework_score,
    with_heartbeat,
)

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

NOBODY = 65534
ROOT = Path(__file__).resolve().parents[2]
# Three nodes for two regions: every R3 stream then has replicas in both.
NODES = ["eu-west-1", "eu-central-1", "eu-west-1-b"]
R3 = 3
SITE_DIRS = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
BOOT = ("import site, sys\n"
        f"for d in {SITE_DIRS!r}: site.addsitedir(d)\n"
        "from meshd.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
"""`meshd` for a user who may not read this interpreter's own site (-S): the venv's packages added by hand."""


def as_nobody() -> dict[str, Any]:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def interpreter_for_nobody() -> str:
    """This interpreter if nobody may run it, else the system's one of the same version (same ABI)."""
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in dict.fromkeys([sys.executable, system]):
        if not os.access(candidate, os.X_OK):
            continue
        try:
            probe = subprocess.run([candidate, "-S", "-c", BOOT.replace("sys.exit(main(sys.argv[1:]))", "")],
                                   capture_output=True, cwd="/", **as_nobody())
        except PermissionError:  # e.g. a pyenv interpreter under a 0700 /root
            continue
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"user {NOBODY} can run neither {sys.executable} nor {system} with meshd importable "
                f"from {SITE_DIRS}: give it read access to the checkout and its virtualenv")


class HardenedFederation(Federation):
    """The audit tests' hardened federation, on a TLS cluster of region-named nodes, for daemons run as nobody."""

    def __init__(self, root: Path, binary: str, heartbeat: HeartbeatReceiver):
        super().__init__(root, binary, heartbeat)
        self.http_ports = {r: free_port() for r in REGIONS}
        self.cluster: NatsCluster | None = None

    @property
    def url(self) -> str:
        return self.cluster.urls[0] if self.cluster is not None else "tls://127.0.0.1:1"

    def setup(self) -> HardenedFederation:
        super().setup()
        etc = self.root / "etc"
        etc.mkdir()
        for name in ("billing_matrix.yaml", "tax_rates.yaml", "fx_rates.yaml"):
            shutil.copy(ROOT / "etc" / name, etc / name)
        unit = shutil.copy(ROOT / "systemd" / "meshd@.service", etc / "meshd@.service")
        for region in REGIONS:
            self.patch(region, {
                "nats": {"servers": self.cluster_urls},
                "http": {"port": self.http_ports[region]},
                "metering": {"stream": {"replicas": R3}},
                "billing": {"numbers_replicas": R3, "matrix": str(etc / "billing_matrix.yaml"),
                            "tax_rates": str(etc / "tax_rates.yaml"), "fx_rates": str(etc / "fx_rates.yaml")},
                "failover": {"kv": {"replicas": R3}},
                "alerts": {"dedup": {"replicas": R3}},
                "audit": {"systemd_unit": str(unit)},
                "tenants": {"registry": "kv", "replicas": R3},
                "partners": {"enabled": True, "port": 0, "replicas": R3,
                             "tls": {"cert_file": str(self.pki["cert"]), "key_file": str(self.pki["key"])}},
            })
        self.record_drills()
        return self

    def write_server_config(self) -> Path:
        """Each node's config, and node 1's where `meshd init` puts the server config (the audit reads it)."""
        workdir = self.root / "nats"
        self.cluster = NatsCluster(workdir, size=len(NODES), name=FEDERATION, names=NODES,
                                   server_tags=[[f"region:{n.removesuffix('-b')}"] for n in NODES],
                                   tls=TlsFiles(self.pki["cert"], self.pki["key"]),
                                   authorization=authorization_block(FEDERATION, self.passwords))
        for node in self.cluster.nodes:
            node.binary = self.binary
            node.write_config()
        conf = self.dir / "nats-server.conf"
        shutil.copy(self.cluster.nodes[0].conf_path, conf)
        return conf

    @property
    def cluster_urls(self) -> list[str]:
        assert self.cluster is not None
        return self.cluster.urls

    def record_drills(self) -> None:
        """A failover drill in each region's signed audit log, as `meshd failover REGION` records it."""
        for region in REGIONS:
            key = self.dir / self.data[region]["identity"]["private_key"]
            log = AuditLog(self.state_dir(region) / "failover" / "audit.log", region, Signer(load_private_key(key)))
            log.open()
            log.append("request", {"region": region, "action": "failover", "by": region,
                                   "reason": "quarterly DR drill", "force": False})

    def start_server(self) -> Any:
        assert self.cluster is not None
        return self.cluster.start()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


def give_to_nobody(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


@contextlib.contextmanager
def daemons_as_nobody(fed: HardenedFederation, python: str) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    logs = fed.root / "logs"
    logs.mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(fed.root), PYTHONUNBUFFERED="1")
    try:
        for region in REGIONS:
            with open(logs / f"{region}.log", "ab") as log:
                procs[region] = subprocess.Popen(
                    [python, "-S", "-c", BOOT, "run", "--config", str(fed.configs[region]), "--log-format", "json"],
                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=fed.root,
                    start_new_session=True, **as_nobody())
        yield procs
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def audit(capsys: pytest.CaptureFixture[str], config: Path, *checks: str) -> tuple[int, dict[str, Any]]:
    """`meshd audit --json` asked of one region's daemon, which asks every region over the bus."""
    argv = ["audit", "--config", str(config), "--json", *[a for c in checks for a in ("--check", c)]]
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, argv)
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out)
    except ValueError:
        return code, {"error": err or out}


@pytest.fixture
def hardened(nats_binary: str) -> Iterator[HardenedFederation]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the hardened federation test starts daemons as user 65534: CI runs it as root")
        pytest.skip("starting the daemons as another user (65534) needs root")
    # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, and nobody must reach its files.
    root = Path(tempfile.mkdtemp(prefix="meshd-hardened-"))
    root.chmod(0o755)
    try:
        with with_heartbeat(HardenedFederation, root, nats_binary) as fed:
            yield fed
    finally:
        if not os.environ.get("MESHD_KEEP_HARDENED"):
            shutil.rmtree(root, ignore_errors=True)


async def test_a_hardened_federation_passes_every_check_and_scores_100(
        hardened: HardenedFederation, capsys: pytest.CaptureFixture[str]) -> None:
    python = interpreter_for_nobody()
    fed = hardened.setup()
    give_to_nobody(fed.root)
    fed.start_server()
    west = fed.configs[REGIONS[0]]
    with daemons_as_nobody(fed, python) as procs:
        async def deadman_delivered() -> bool:
            for region, proc in procs.items():
                if proc.poll() is not None:
                    tail = (fed.root / "logs" / f"{region}.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{region} exited with {proc.returncode}:\n{tail}")
            return await deadman_passes(capsys, west)

        # The one fact that takes time to appear: each region's dead man's switch delivered to its receiver.
        await until(deadman_delivered, timeout=60, interval=0.5, what="logging.deadman passing in every region")
        code, result = await audit(capsys, west)

    assert "checks" in result, result
    rows = result["checks"]
    assert {r["region"] for r in rows} == set(REGIONS) and result["missing"] == []
    assert sorted((r["id"], r["region"]) for r in rows) == sorted((c, r) for c in CHECK_IDS for r in REGIONS)
    not_passed = [r for r in rows if r["status"] != "pass"]
    assert not_passed == [], not_passed  # not one not applicable either: every check assessed something
    assert code == 0
    by = {(r["id"], r["region"]): r for r in rows}
    for region in REGIONS:  # the facts that make this setup hardened, as the checks saw them
        assert f"runs as uid {NOBODY} without capabilities" in by[("host.not_root", region)]["detail"]
        assert by[("host.systemd_exposure", region)]["detail"].startswith(f"unit file {fed.root}/etc/meshd@.service")
        assert "spread over regions, on 3 NATS nodes" in by[("continuity.replicas", region)]["detail"]
        assert "encrypted with the region's keyring" in by[("rest.invoices_encrypted", region)]["detail"]
    for fw in result["frameworks"]:
        assert fw["score"] == pytest.approx(1.0), (fw["id"], fw["score"])
        assert all(c["status"] == "pass" for c in fw["controls"] if c["counted"]), fw["id"]
    # The plugin's scores are the documented formula's.
    expected = control_scores(rows)
    for fw in result["frameworks"]:
        assert framework_score(expected[fw["id"]]) == pytest.approx(fw["score"])


async def deadman_passes(capsys: pytest.CaptureFixture[str], config: Path) -> bool:
    _code, result = await audit(capsys, config, "logging.deadman")
    rows = result.get("checks", [])
    return len(rows) == len(REGIONS) and all(r["status"] == "pass" for r in rows)
