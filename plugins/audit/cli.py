"""``meshd audit``: the federation's compliance per framework; ``meshd audit verify-evidence DIR``.

Exit codes like prowler's: 0 nothing failed at or above ``--fail-on``, 3 a
failed control at or above it, 1 a runtime failure (daemon unreachable,
evidence not writable), 2 bad input (an unknown framework or check id, a bad
mapping file: the daemon names its file and line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from meshd.auditcheck import Severity
from meshd.config import ConfigError, TrustBundle, load_model_file
from meshd.i18n import LANGUAGES
from meshd.identity import TrustStore

from .catalog import FRAMEWORK_IDS
from .evidence import EvidenceError, verify_evidence, write_evidence
from .oscal import assessment_results
from .scoring import worst_failure

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_FINDINGS = 0, 1, 2, 3
SEVERITIES = [s.value for s in Severity]


REPORT_FORMATS = ("md", "html", "pdf")


def add_commands(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("audit", help=t("compliance.cli.help"), description=t("compliance.cli.description"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--framework", action="append", metavar="ID", help=t("compliance.cli.framework",
                                                                          frameworks=", ".join(FRAMEWORK_IDS)))
    p.add_argument("--check", action="append", metavar="ID", help=t("compliance.cli.check"))
    p.add_argument("--json", action="store_true", help=t("compliance.cli.json"))
    p.add_argument("--fail-on", choices=SEVERITIES, default="low", help=t("compliance.cli.fail_on"))
    p.add_argument("--evidence", metavar="DIR", help=t("compliance.cli.evidence"))
    p.add_argument("--oscal", metavar="FILE", help=t("compliance.cli.oscal"))
    p.add_argument("--report", metavar="FILE", help=t("compliance.cli.report"))
    p.add_argument("--report-format", choices=REPORT_FORMATS, help=t("compliance.cli.report_format"))
    p.add_argument("--report-lang", choices=LANGUAGES, help=t("compliance.cli.report_lang"))
    p.set_defaults(handler=cmd_audit)
    sub = p.add_subparsers(dest="audit_command", metavar="COMMAND")
    v = sub.add_parser("verify-evidence", help=t("compliance.cli.verify.help"),
                       description=t("compliance.cli.verify.description"))
    v.add_argument("dir", help=t("compliance.cli.verify.dir"))
    v.add_argument("--config", default=argparse.SUPPRESS, help=t("cli.opt.config"))
    v.add_argument("--trust-bundle", metavar="FILE", help=t("compliance.cli.verify.trust_bundle"))
    v.set_defaults(handler=cmd_verify)


def _percent(t: Any, score: float | None) -> str:
    return t("compliance.cli.not_assessed") if score is None else f"{t.number(score * 100, 1)} %"


def render(t: Any, result: dict[str, Any]) -> str:
    lines = [t("compliance.cli.header", federation=result["federation"], at=result["generated_at"],
               answered=sum(1 for r in result["regions"].values() if r.get("answered")),
               regions=len(result["regions"]))]
    for region, info in result["regions"].items():
        if not info.get("answered"):
            lines.append(t("compliance.cli.no_answer", region=region, error=info.get("error", "")))
    for fw in result["frameworks"]:
        controls = fw["controls"]
        failed = [c for c in controls if c["status"] == "fail"]
        unassessed = [c for c in controls if c["status"] == "not_assessed"]
        lines += ["", t("compliance.cli.framework_line", name=fw["name"], score=_percent(t, fw["score"]),
                        controls=len(controls), failed=len(failed), not_assessed=len(unassessed))]
        for sev in reversed(list(Severity)):
            for c in (c for c in failed if c.get("severity") == sev.value):
                label = t(f"compliance.severity.{sev.value}")
                lines.append(f"  {label:<9} {c['id']:<18} {_percent(t, c['score']):>8}"
                             f"  {c['title']}")
                lines.append("  " + " " * 9 + " " + t("compliance.cli.failed_checks",
                                                      checks=", ".join(c["failed_checks"]),
                                                      regions=", ".join(c.get("failed_in") or [])))
        for c in unassessed:
            lines.append(f"  {t('compliance.cli.na_short'):<9} {c['id']:<18} {'':>8}  {c['title']}")
    return "\n".join(lines)


def cmd_audit(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    body = {"frameworks": args.framework, "checks": args.check, "evidence": bool(args.evidence)}
    status, doc = ctx.call(config, "POST", "/v1/audit", body, timeout=120)
    if status != 200 or not isinstance(doc, dict) or "frameworks" not in doc:
        doc = doc if isinstance(doc, dict) else {}
        ctx.error(ctx.t("compliance.cli.refused", status=status, detail=str(doc.get("error", ""))))
        return EXIT_USAGE if doc.get("code") == "bad_input" else EXIT_FAILURE
    bundles = doc.pop("evidence", None)
    if args.evidence:
        try:
            written = write_evidence(Path(args.evidence), doc["federation"], bundles or {})
        except (OSError, EvidenceError) as exc:
            ctx.error(ctx.t("compliance.cli.evidence_failed", path=args.evidence, detail=str(exc)))
            return EXIT_FAILURE
        ctx.error(ctx.t("compliance.cli.evidence_written", count=len(written), path=args.evidence))
    if args.oscal:
        try:
            Path(args.oscal).write_text(json.dumps(assessment_results(doc), indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            ctx.error(ctx.t("compliance.cli.oscal_failed", path=args.oscal, detail=exc.strerror or str(exc)))
            return EXIT_FAILURE
    if args.report and not _write_report(ctx, args, doc):
        return EXIT_FAILURE
    ctx.print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else render(ctx.t, doc))
    worst = worst_failure(doc["frameworks"])
    return EXIT_FINDINGS if worst is not None and worst.rank >= Severity(args.fail_on).rank else EXIT_OK


def _write_report(ctx: Any, args: argparse.Namespace, doc: dict[str, Any]) -> bool:
    """The merged result as a Markdown, HTML or PDF report (format from --report-format or the file's suffix)."""
    from .report import render_html, render_markdown, render_pdf  # jinja2 and WeasyPrint: only when asked

    path = Path(args.report)
    fmt = args.report_format or {".md": "md", ".html": "html", ".htm": "html", ".pdf": "pdf"}.get(
        path.suffix.lower(), "md")
    lang = args.report_lang or ctx.t.lang
    try:
        if fmt == "md":
            path.write_text(render_markdown(doc, lang), encoding="utf-8")
        elif fmt == "html":
            path.write_text(render_html(doc, lang), encoding="utf-8")
        else:
            path.write_bytes(render_pdf(render_html(doc, lang)))
    except OSError as exc:
        ctx.error(ctx.t("compliance.cli.report_failed", path=path, detail=exc.strerror or str(exc)))
        return False
    ctx.error(ctx.t("compliance.cli.report_written", path=path))
    return True


def cmd_verify(args: argparse.Namespace, ctx: Any) -> int:
    directory = Path(args.dir)
    if not (directory / "manifest.json").is_file():
        ctx.error(ctx.t("compliance.cli.verify.no_manifest", path=directory))
        return EXIT_USAGE
    try:
        if args.trust_bundle:
            bundle = load_model_file(args.trust_bundle, TrustBundle)
        else:
            bundle = ctx.load_config(getattr(args, "config", None)).trust
    except ConfigError as exc:
        for issue in exc.issues:
            ctx.error(ctx.describe_issue(issue))
        return EXIT_USAGE
    problems, verified = verify_evidence(directory, TrustStore(bundle))
    for problem in problems:
        ctx.error(ctx.t("compliance.cli.verify.problem", path=problem.path, message=problem.message))
    if problems:
        ctx.error(ctx.t("compliance.cli.verify.failed", count=len(problems)))
        return EXIT_FAILURE
    ctx.print(ctx.t("compliance.cli.verify.ok", count=verified, path=directory))
    return EXIT_OK
