"""``meshd audit`` against real daemons on a real nats-server, with stand-in checks (tests/audit/standin.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from trestle.oscal.assessment_results import Model as OscalAssessmentResults

from meshd.cli import main
from meshd.natsserver import free_port
from meshd.testing import running_daemons, until, write_federation
from meshd_plugins.audit.runtime import RUN_KIND

from .standin import ALL_PLUGINS, SECRET, StandinChecks, patch_configs, set_toggle, write_frameworks

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

REGIONS = ["eu-west-1", "us-east-1"]


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``meshd ARGV`` in a worker thread (the daemons answer it from this event loop)."""
    capsys.readouterr()
    try:
        code = await anyio.to_thread.run_sync(main, list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def federation(tmp_path: Path, nats_url: str, regions: list[str], **audit: Any) -> tuple[dict[str, Path], str]:
    port = free_port()
    paths = write_federation(tmp_path, regions, nats_url)
    patch_configs(paths, write_frameworks(tmp_path / "frameworks"), {"eu-west-1": port}, **audit)
    return paths, str(paths["eu-west-1"])


def by_check(result: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["id"], c["region"]): c["status"] for c in result["checks"]}


def control(result: dict[str, Any], framework: str, control_id: str) -> dict[str, Any]:
    fw = next(f for f in result["frameworks"] if f["id"] == framework)
    return next(c for c in fw["controls"] if c["id"] == control_id)


async def test_an_audit_merges_two_regions_scores_and_exits_by_severity(
        tmp_path: Path, nats_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    paths, config = federation(tmp_path, nats_server.url, REGIONS)
    async with running_daemons(paths, extra_plugins=[("standin", StandinChecks)], blocked=ALL_PLUGINS) as ds:
        set_toggle(ds["us-east-1"], "fail")
        code, out, err = await cli(capsys, "audit", "--config", config, "--json")
        assert code == 3, err  # demo.toggle (critical) failed in us-east-1
        result = json.loads(out)
        assert result["regions"] == {"eu-west-1": {"answered": True}, "us-east-1": {"answered": True}}
        statuses = by_check(result)
        assert statuses[("demo.toggle", "eu-west-1")] == "pass"
        assert statuses[("demo.toggle", "us-east-1")] == "fail"  # ran in that region, on its state
        assert statuses[("demo.boom", "us-east-1")] == "error"
        assert statuses[("demo.slow", "eu-west-1")] == "error"  # time-boxed at 500ms, not 60s
        slow = next(c for c in result["checks"] if c["id"] == "demo.slow")
        assert "did not finish within 0.5s" in slow["detail"]
        assert result["seconds"] < 5
        cc61 = control(result, "soc2", "CC6.1")
        assert (cc61["score"], cc61["status"], cc61["failed_checks"], cc61["failed_in"], cc61["severity"]) == \
            (0.75, "fail", ["demo.toggle"], ["us-east-1"], "critical")
        assert control(result, "soc2", "CC6.6")["status"] == "pass"
        assert control(result, "soc2", "A1.2")["status"] == "not_assessed"  # only n/a results
        soc2 = next(f for f in result["frameworks"] if f["id"] == "soc2")
        assert soc2["score"] == pytest.approx((0.75 + 1 + 0) / 3, abs=1e-4)
        assert SECRET not in out

        # The table: the failed control under its severity, the score per framework.
        code, out, _ = await cli(capsys, "audit", "--config", config, "--framework", "soc2")
        assert code == 3
        assert "SOC 2: score 58.3 %; 4 controls, 2 failed, 1 not assessed" in out
        assert "CRITICAL  CC6.1" in out and "failed checks: demo.toggle (in us-east-1)" in out
        assert "GDPR" not in out

        # --fail-on: the boom (medium) is below high, the toggle (critical) is not.
        set_toggle(ds["us-east-1"], "pass")
        code, out, _ = await cli(capsys, "audit", "--config", config, "--fail-on", "high")
        assert code == 0, out
        code, _, _ = await cli(capsys, "audit", "--config", config, "--fail-on", "medium")
        assert code == 3
        code, out, _ = await cli(capsys, "audit", "--config", config, "--check", "demo.pass", "--json")
        assert code == 0 and {c["id"] for c in json.loads(out)["checks"]} == {"demo.pass"}

        # Bad input: exit 2 naming what is unknown.
        code, _, err = await cli(capsys, "audit", "--config", config, "--framework", "sox")
        assert code == 2 and "unknown framework(s) sox" in err
        code, _, err = await cli(capsys, "audit", "--config", config, "--check", "demo.nope")
        assert code == 2 and "demo.nope" in err
        code, _, err = await cli(capsys, "audit", "--config", config, "--fail-on", "severe")
        assert code == 2 and "severe" in err

        # A mapping naming a check no plugin offers: the file and line, exit 2.
        (tmp_path / "frameworks" / "pipeda.yaml").write_text(
            "framework: pipeda\nname: PIPEDA\ncontrols:\n  - id: '4.7'\n    title: Safeguards\n"
            "    checks: [demo.pass, demo.gone]\n")
        code, _, err = await cli(capsys, "audit", "--config", config)
        assert code == 2 and f"{tmp_path / 'frameworks' / 'pipeda.yaml'}:6: controls[0].checks[1]" in err
        assert "demo.gone" in err

    # No daemon: a runtime failure.
    code, _, err = await cli(capsys, "audit", "--config", config)
    assert code == 1, err


async def test_a_region_that_does_not_answer_is_named_and_its_checks_not_assessed(
        tmp_path: Path, nats_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    paths, config = federation(tmp_path, nats_server.url, [*REGIONS, "ap-southeast-1"])
    running = {r: paths[r] for r in REGIONS}  # ap-southeast-1 is in the region map but down
    async with running_daemons(running, extra_plugins=[("standin", StandinChecks)], blocked=ALL_PLUGINS) as ds:
        # A malformed request gets a refusal, and the region keeps answering.
        reply = await ds["eu-west-1"].bus.request(RUN_KIND, "audit.run", {"checks": 5}, target="us-east-1",
                                                  timeout=5)
        assert reply.body["ok"] is False and "bad request" in reply.body["error"]
        code, out, err = await cli(capsys, "audit", "--config", config, "--json", "--check", "demo.pass",
                                   "--framework", "soc2")
        assert code == 0, err
        result = json.loads(out)
        assert result["regions"]["ap-southeast-1"]["answered"] is False
        assert "no answer" in result["regions"]["ap-southeast-1"]["error"]
        assert result["missing"] == ["ap-southeast-1"]
        assert by_check(result) == {("demo.pass", "eu-west-1"): "pass", ("demo.pass", "us-east-1"): "pass",
                                    ("demo.pass", "ap-southeast-1"): "not_assessed"}
        cc66 = control(result, "soc2", "CC6.6")
        assert (cc66["status"], cc66["score"]) == ("not_assessed", pytest.approx(2 / 3, abs=1e-4))
        code, out, _ = await cli(capsys, "audit", "--config", config, "--check", "demo.pass", "--framework", "soc2")
        assert "NOT ASSESSED: region ap-southeast-1 did not answer" in out


async def test_evidence_is_signed_scrubbed_and_a_changed_byte_names_the_file(
        tmp_path: Path, nats_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    paths, config = federation(tmp_path, nats_server.url, REGIONS)
    evidence = tmp_path / "evidence"
    oscal = tmp_path / "oscal.json"
    async with running_daemons(paths, extra_plugins=[("standin", StandinChecks)], blocked=ALL_PLUGINS) as ds:
        set_toggle(ds["eu-west-1"], "fail")
        code, _, err = await cli(capsys, "audit", "--config", config, "--evidence", str(evidence),
                                 "--oscal", str(oscal), "--report", str(tmp_path / "report.html"),
                                 "--report-lang", "ar")
        assert code == 3, err
        page = (tmp_path / "report.html").read_text()
        assert 'dir="rtl"' in page and "SOC 2" in page and f"report written to {tmp_path / 'report.html'}" in err
    files = sorted(p.relative_to(evidence).as_posix() for p in evidence.rglob("*") if p.is_file())
    # One file per check and region (the audit plugin's own checks too), and the manifest.
    assert "manifest.json" in files
    assert {f"{r}/demo.{c}.json" for r in REGIONS for c in ("boom", "na", "pass", "slow", "toggle")} <= set(files)
    assert len({f.split("/")[1] for f in files if "/" in f}) * len(REGIONS) == len(files) - 1
    toggle = json.loads((evidence / "eu-west-1" / "demo.toggle.json").read_text())
    assert toggle["status"] == "fail" and toggle["evidence"]["toggle"] == "fail"
    for path in evidence.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(), f"{path} holds the secret"
    assert "***" in json.dumps(toggle)  # masked where the check put it

    code, out, err = await cli(capsys, "audit", "verify-evidence", str(evidence), "--config", config)
    assert code == 0, err
    assert f"evidence verified: {len(files) - 1} file(s)" in out

    target = evidence / "us-east-1" / "demo.pass.json"
    data = bytearray(target.read_bytes())
    data[data.index(b"pass")] ^= 0x01  # one byte: "pass" -> "qass"
    target.write_bytes(bytes(data))
    code, _, err = await cli(capsys, "audit", "verify-evidence", str(evidence), "--config", config)
    assert code == 1
    assert f"{target}: changed" in err and "1 problem(s)" in err

    # A manifest re-signed by nobody (the hash fixed up to match) fails on its signature.
    manifest = json.loads((evidence / "manifest.json").read_text())
    inner = json.loads(manifest["regions"]["us-east-1"]["manifest"])
    inner["files"]["us-east-1/demo.pass.json"] = hashlib.sha256(bytes(data)).hexdigest()
    manifest["regions"]["us-east-1"]["manifest"] = json.dumps(inner, sort_keys=True, indent=2) + "\n"
    (evidence / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = await cli(capsys, "audit", "verify-evidence", str(evidence), "--config", config)
    assert code == 1 and "region us-east-1: the manifest's signature does not verify" in err

    code, _, err = await cli(capsys, "audit", "verify-evidence", str(tmp_path), "--config", config)
    assert code == 2 and "no manifest.json" in err

    # The OSCAL output validates against NIST's OSCAL model (compliance-trestle's, generated from the schema).
    doc = json.loads(oscal.read_text())
    OscalAssessmentResults.model_validate(doc)
    findings = {f["target"]["target-id"]: f["target"]["status"]["state"]
                for f in doc["assessment-results"]["results"][0]["findings"]}
    assert findings["soc2-cc6.1"] == "not-satisfied" and findings["soc2-cc6.6"] == "satisfied"
    assert SECRET not in oscal.read_text()


async def test_the_scheduled_audit_alerts_when_a_passing_control_fails_and_resolves_it(
        tmp_path: Path, nats_server: Any) -> None:
    paths, _ = federation(tmp_path, nats_server.url, ["eu-west-1"], schedule="200ms", first_audit_after="0s")
    async with running_daemons(paths, extra_plugins=[("standin", StandinChecks)], blocked=ALL_PLUGINS) as ds:
        daemon = ds["eu-west-1"]
        standin = daemon.hooks.pm.get_plugin("standin")
        audit = daemon.hooks.pm.get_plugin("audit").runtime
        await until(lambda: audit.runs >= 2, what="two scheduled audits")
        assert standin.alerts == []  # demo.boom always fails: it never passed, so no alert for CC7.2

        set_toggle(daemon, "fail")
        await until(lambda: any(a.status == "firing" for a in standin.alerts), what="the alert firing")
        firing = [a for a in standin.alerts if a.status == "firing"]
        # GDPR Art.32 also maps demo.toggle, but demo.slow always errors there: it never passed, so no alert.
        assert [(a.labels["framework"], a.labels["control"]) for a in firing] == [("soc2", "CC6.1")]
        cc61 = next(a for a in firing if a.labels["control"] == "CC6.1")
        assert cc61.labels["alertname"] == "ComplianceControlFailing"
        assert cc61.labels["severity"] == "critical" and cc61.labels["region"] == "eu-west-1"
        assert "SOC 2 CC6.1 now fails in eu-west-1" in cc61.annotations["summary"]
        runs = audit.runs
        await until(lambda: audit.runs >= runs + 2, what="two more audits")
        assert len([a for a in standin.alerts if a.status == "firing"]) == len(firing)  # raised once

        set_toggle(daemon, "pass")
        await until(lambda: any(a.status == "resolved" for a in standin.alerts), what="the alert resolved")
        resolved = next(a for a in standin.alerts if a.status == "resolved")
        assert resolved.labels == cc61.labels and resolved.fingerprint == cc61.fingerprint
