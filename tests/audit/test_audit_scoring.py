"""The scoring formula of docs/audit.md, and the framework mappings shipped in etc/compliance."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshd.auditcheck import CheckResult, Severity
from meshd.config import ConfigError
from meshd_plugins.audit.catalog import CHECK_IDS, FRAMEWORK_IDS
from meshd_plugins.audit.frameworks import Control, Framework, load_frameworks
from meshd_plugins.audit.scoring import not_assessed_rows, score_framework, worst_failure

from .standin import write_frameworks

ROOT = Path(__file__).resolve().parents[2]

FW = Framework("soc2", "SOC 2", "t", (
    Control("C1", "two checks", ("a.one", "a.two")),
    Control("C2", "one check", ("a.one",)),
    Control("C3", "not applicable", ("a.na",)),
), Path("soc2.yaml"))


def row(check: str, region: str, status: str, severity: str = "high") -> dict[str, str]:
    return {"id": check, "region": region, "status": status, "severity": severity, "title": check}


def test_control_score_is_passed_over_counted_results_in_every_region() -> None:
    rows = [row("a.one", "r1", "pass"), row("a.one", "r2", "pass"),
            row("a.two", "r1", "fail", "critical"), row("a.two", "r2", "pass"),
            row("a.na", "r1", "not_applicable"), row("a.na", "r2", "not_applicable")]
    fw = score_framework(FW, rows)
    c1, c2, c3 = fw["controls"]
    assert (c1["score"], c1["status"], c1["failed_checks"], c1["failed_in"], c1["severity"]) == \
        (0.75, "fail", ["a.two"], ["r1"], "critical")
    assert (c2["score"], c2["status"]) == (1.0, "pass")
    assert (c3["score"], c3["status"]) == (None, "not_assessed")
    assert fw["score"] == pytest.approx((0.75 + 1.0) / 2)  # the n/a control is left out
    assert worst_failure([fw]) is Severity.CRITICAL


def test_an_error_counts_as_a_failure() -> None:
    fw = score_framework(FW, [row("a.one", "r1", "error"), row("a.two", "r1", "pass")])
    assert fw["controls"][1]["status"] == "fail" and fw["controls"][1]["score"] == 0.0


def test_a_region_that_did_not_answer_lowers_the_score_and_is_never_passed() -> None:
    answered = [row("a.one", "r1", "pass"), row("a.two", "r1", "pass")]
    missing = not_assessed_rows("r2", [{"id": "a.one"}, {"id": "a.two"}], "no answer")
    fw = score_framework(FW, answered + missing)
    c1, c2, _ = fw["controls"]
    assert (c1["score"], c1["status"], c1["not_assessed_checks"]) == (0.5, "not_assessed", ["a.one", "a.two"])
    assert (c2["score"], c2["status"]) == (0.5, "not_assessed")
    assert fw["score"] == 0.5
    assert worst_failure([fw]) is None  # not assessed is not a finding either


def test_a_mapped_check_nobody_ran_leaves_the_control_not_assessed() -> None:
    fw = score_framework(FW, [row("a.one", "r1", "pass")])
    assert fw["controls"][0]["status"] == "not_assessed" and fw["controls"][0]["not_assessed_checks"] == ["a.two"]


def test_the_shipped_mappings_name_only_catalogued_checks_and_cover_them_all() -> None:
    frameworks = load_frameworks(ROOT / "etc" / "compliance", CHECK_IDS)
    assert list(frameworks) == list(FRAMEWORK_IDS)
    assert set().union(*(fw.check_ids() for fw in frameworks.values())) == CHECK_IDS
    ids = {fid: {c.id for c in fw.controls} for fid, fw in frameworks.items()}
    assert {"CC6.1", "CC6.6", "CC6.7", "CC7.2", "A1.2"} <= ids["soc2"]
    assert {"A.5.15", "A.8.15", "A.8.16", "A.8.24", "A.5.30", "A.5.34"} <= ids["iso27001"]
    assert {"Art.30", "Art.32", "Art.44-49"} <= ids["gdpr"]
    assert "4.7" in ids["pipeda"]
    assert {"164.312(a)(1)", "164.312(b)", "164.312(c)(1)", "164.312(e)(1)"} <= ids["hipaa"]


def test_a_mapping_naming_a_missing_check_is_reported_at_its_line(tmp_path: Path) -> None:
    bad = write_frameworks(tmp_path / "fw", gdpr="""\
framework: gdpr
name: GDPR
controls:
  - id: Art.32
    title: Security of processing
    checks: [demo.toggle,
             demo.missing]
""")
    with pytest.raises(ConfigError) as err:
        load_frameworks(bad, {"demo.pass", "demo.toggle", "demo.boom", "demo.slow", "demo.na"})
    assert [str(i) for i in err.value.issues] == [
        f"{bad / 'gdpr.yaml'}:7: controls[0].checks[1]: control Art.32: no plugin offers check 'demo.missing'"]


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("framework: sox\nname: SOX\ncontrols: [{id: A, title: a, checks: [x.y]}]\n", 1, "unknown framework 'sox'"),
    ("framework: soc2\nname: SOC 2\ncontrols:\n  - id: A\n    title: a\n    checks: []\n", 6, "checks"),
    ("framework: soc2\nname: SOC 2\ncontrols:\n  - {id: A, title: a, checks: [x.y]}\n"
     "  - {id: A, title: b, checks: [x.y]}\n", 5, "listed twice"),
    ("framework: soc2\nname: SOC 2\ncontrols: [{id: A, title: a, checks: [NotAnId]}]\n", 3, "checks"),
])
def test_a_bad_framework_file_names_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    (tmp_path / "soc2.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_frameworks(tmp_path)
    issue = err.value.issues[0]
    assert (issue.file, issue.line) == (tmp_path / "soc2.yaml", line) and needle in str(issue)


def test_a_check_result_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="passed"):
        CheckResult("passed", "x")  # type: ignore[arg-type]


def test_evidence_too_large_for_the_bus_is_replaced_by_a_note_largest_first() -> None:
    from meshd_plugins.audit.runtime import fit_evidence

    rows = [{"id": "a", "evidence": {"x": "a" * 5000}}, {"id": "b", "evidence": {"x": "b" * 100}},
            {"id": "c", "evidence": {"x": "c" * 3000}}]
    fit_evidence(rows, 4000)
    assert rows[0]["evidence"]["truncated"] is True and rows[0]["evidence"]["bytes"] > 5000
    assert rows[1]["evidence"] == {"x": "b" * 100} and rows[2]["evidence"] == {"x": "c" * 3000}
