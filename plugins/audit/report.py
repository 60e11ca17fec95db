"""The merged audit result (``meshd audit --json``) as a report for a reader: Markdown, HTML and PDF.

One report per audit, in English, French, Spanish, German or Arabic (right to
left). Per framework it shows the score, every control with its status, the
failed controls grouped by the severity of their failing checks (with the
region and the check's detail), the regions that did not answer and one
remediation line per failed check. Labels, check titles and remediations come
from ``locales/<lang>/audit.yaml``; scores are formatted by Babel for the
language (``93 %`` in French, ``93%`` in English).

The result is rendered as the daemon merged it: nothing is recomputed here, so
the report shows the scores the audit computed. Details are data written by
checks (paths, hostnames, server errors), never markup: the HTML template
autoescapes everything, and Markdown cells escape the characters that would
break a table.

The HTML page is self-contained (inline CSS, system fonts, no network) like the
invoice's, so that it prints, archives and converts to PDF the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.numbers import format_percent

from meshd.i18n import Translator
from meshd.pages import RenderError, html_to_pdf, page_environment, text_direction

# RenderError is re-exported: callers catch it from the module whose render_pdf they call.
__all__ = ["RenderError", "render_html", "render_markdown", "render_pdf"]

TEMPLATE = "report.html"
# Most severe first: a reader starts with what matters most.
SEVERITIES = ("critical", "high", "medium", "low")
FAILED = ("fail", "error")


def check_key(check_id: str) -> str:
    """The catalog key stem of a check: ``transit.nats_tls`` -> ``audit.check.transit_nats_tls``."""
    return "audit.check." + check_id.replace(".", "_")


def render_html(result: Mapping[str, Any], lang: str = "en") -> str:
    """The report of ``result`` (the merged audit JSON) as a printable HTML page in ``lang``."""
    template = page_environment("meshd_plugins.audit").get_template(TEMPLATE)
    return template.render(report=Report(result, Translator(lang)).context())


def render_pdf(html: str) -> bytes:
    """``html`` (a page of :func:`render_html`) laid out as an A4 PDF by WeasyPrint."""
    return html_to_pdf(html)


def render_markdown(result: Mapping[str, Any], lang: str = "en") -> str:
    """The report of ``result`` as Markdown (GitHub tables), for a ticket, a wiki or a pull request."""
    r = Report(result, Translator(lang)).context()
    label = r["label"]
    out: list[str] = [f"# {r['title']}", ""]
    for name, value in r["facts"]:
        out.append(f"- **{_md(name)}**: {_md(value)}")
    out.append("")
    if r["silent"]:
        out += [f"## {label('silent_regions')}", "", label("silent_note"), ""]
        for region in r["silent"]:
            out.append(f"- **{_md(region['name'])}**: {_md(region['error'])}")
        out.append("")
    out += [f"## {label('summary')}", "", _md_table([label("framework"), label("score"), label("failed_controls")],
                                                   [[f["name"], f["score"], str(f["failed_count"])]
                                                    for f in r["frameworks"]]), ""]
    for fw in r["frameworks"]:
        out += [f"## {_md(fw['name'])}: {fw['score']}", ""]
        out += [_md_table([label("control"), label("control_title"), label("score"), label("control_status")],
                          [[c["id"], c["title"], c["score"], c["status_label"]] for c in fw["controls"]]), ""]
        for group in fw["findings"]:
            out += [f"### {group['severity_label']}", ""]
            out += [_md_table([label("control"), label("check"), label("region"), label("detail")],
                              [[f["controls"], _Raw(f"{_md(f['title'])} `{f['id']}`"), f["region"], f["detail"]]
                               for f in group["rows"]]), ""]
    if r["remediations"]:
        out += [f"## {label('remediation')}", ""]
        for item in r["remediations"]:
            # Remediations are our own catalog text: their `commands` stay Markdown code.
            out.append(f"- **{_md(item['title'])}** (`{item['id']}`): {' '.join(item['text'].split())}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _md(text: Any) -> str:
    """``text`` safe inside a Markdown table cell and as inline text: one line, no live markup."""
    value = " ".join(str(text).split())
    for char in "\\`*_[]<>|":
        value = value.replace(char, "\\" + char)
    return value


class _Raw(str):
    """A table cell already written as Markdown (escaped where it holds data)."""


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell if isinstance(cell, _Raw) else _md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _code_parts(text: str) -> list[tuple[bool, str]]:
    """``text`` split at its backticks: (True, command) for each `command`, (False, prose) around them."""
    return [(i % 2 == 1, part) for i, part in enumerate(re.split(r"`", text)) if part]


class Report:
    """What the template shows, formatted for one language: the result in, plain strings out."""

    def __init__(self, result: Mapping[str, Any], t: Translator):
        self.result = result
        self.t = t
        checks = [c for c in result.get("checks") or [] if isinstance(c, Mapping)]
        self.checks = checks
        self.severity = {str(c["id"]): str(c.get("severity") or "low") for c in checks}

    # ------------------------------------------------------------ formatting

    def label(self, key: str, **kwargs: Any) -> str:
        return self.t(f"audit.report.{key}", **kwargs)

    def score(self, value: Any) -> str:
        """A score in [0, 1] as a percentage for the language; a control nothing assessed has none."""
        if value is None:
            return "—"
        # At most one decimal (93.3 %), in the locale's own pattern: "93 %" in French, "93%" in English.
        share = Decimal(str(value)).quantize(Decimal("0.001")).normalize()
        return format_percent(share, locale=self.t.locale, decimal_quantization=False)

    def when(self, value: Any) -> str:
        try:
            return self.t.datetime(datetime.fromisoformat(str(value).replace("Z", "+00:00")), "medium")
        except ValueError:
            return str(value or "")

    def check_title(self, check_id: str, fallback: str = "") -> str:
        key = check_key(check_id) + ".title"
        text = self.t(key)
        return (fallback or check_id) if text == key else text

    def remediation(self, check_id: str) -> str:
        key = check_key(check_id) + ".remediation"
        text = self.t(key)
        return "" if text == key else text

    def status(self, status: str) -> str:
        key = f"audit.report.status.{status}"
        text = self.t(key)
        return status if text == key else text

    def text_dir(self, text: str) -> str:
        """``ltr`` or ``rtl`` from the first strong letter of ``text``; the page's direction without one.

        A check's detail is English whatever the report's language: set in an
        Arabic paragraph, "port 4222: no TLS." would move its period to the left.
        """
        return text_direction(text, self.t.rtl)

    # ------------------------------------------------------------ blocks

    def context(self) -> dict[str, Any]:
        result, t = self.result, self.t
        frameworks = [self.framework(fw) for fw in result.get("frameworks") or []]
        return {
            "lang": t.lang, "dir": "rtl" if t.rtl else "ltr",
            "label": self.label, "text_dir": self.text_dir,
            "title": self.label("title"),
            "facts": self.facts(),
            "silent": self.silent_regions(),
            "frameworks": frameworks,
            "remediations": self.remediations(frameworks),
        }

    def facts(self) -> list[tuple[str, str]]:
        regions = self.result.get("regions") or {}
        answered = sum(1 for r in regions.values() if isinstance(r, Mapping) and r.get("answered"))
        return [(self.label("federation"), str(self.result.get("federation") or "")),
                (self.label("generated_at"), self.when(self.result.get("generated_at"))),
                (self.label("regions"), self.label("regions_answered", answered=self.t.number(answered),
                                                   total=self.t.number(len(regions))))]

    def silent_regions(self) -> list[dict[str, str]]:
        regions = self.result.get("regions") or {}
        return [{"name": str(name), "error": str(info.get("error") or self.label("no_answer"))}
                for name, info in sorted(regions.items())
                if isinstance(info, Mapping) and not info.get("answered")]

    def framework(self, fw: Mapping[str, Any]) -> dict[str, Any]:
        controls = [self.control(c) for c in fw.get("controls") or []]
        return {"id": str(fw.get("id") or ""), "name": str(fw.get("name") or fw.get("id") or ""),
                "score": self.score(fw.get("score")), "controls": controls,
                "failed_count": sum(1 for c in controls if c["status"] == "fail"),
                "findings": self.findings(fw.get("controls") or [])}

    def control(self, control: Mapping[str, Any]) -> dict[str, Any]:
        status = str(control.get("status") or "not_assessed")
        return {"id": str(control.get("id") or ""), "title": str(control.get("title") or ""),
                "score": self.score(control.get("score")), "status": status, "status_label": self.status(status)}

    def findings(self, controls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Every failing check behind a failed control, one row per check and region, grouped by severity.

        A check failing in three regions evidences the same controls three
        times over: one row per region, its controls listed together.
        """
        controls_of: dict[str, list[str]] = {}
        for control in controls:
            if control.get("status") != "fail":
                continue
            for ref in control.get("failed_checks") or []:
                check_id = str(ref.get("id") if isinstance(ref, Mapping) else ref)
                controls_of.setdefault(check_id, []).append(str(control.get("id") or ""))
        groups: dict[str, list[dict[str, str]]] = {s: [] for s in SEVERITIES}
        for check in self.checks:
            check_id = str(check["id"])
            if check_id not in controls_of or check.get("status") not in FAILED:
                continue
            severity = self.severity.get(check_id, "low")
            detail = str(check.get("detail") or "")
            if check.get("status") == "error":
                detail = self.label("check_error", detail=detail)
            groups.setdefault(severity, []).append({
                "id": check_id, "title": self.check_title(check_id, str(check.get("title") or "")),
                "region": str(check.get("region") or ""), "detail": detail,
                "controls": ", ".join(dict.fromkeys(controls_of[check_id]))})
        return [{"severity": s, "severity_label": self.label(f"severity.{s}"),
                 "rows": sorted(rows, key=lambda r: (r["id"], r["region"]))}
                for s, rows in groups.items() if rows]

    def remediations(self, frameworks: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
        """One line per failed check, most severe first, whatever frameworks it fails."""
        seen: dict[str, dict[str, str]] = {}
        for fw in frameworks:
            for group in fw["findings"]:
                for row in group["rows"]:
                    seen.setdefault(row["id"], {"id": row["id"], "title": row["title"],
                                                "severity": group["severity"],
                                                "text": self.remediation(row["id"]),
                                                "parts": _code_parts(self.remediation(row["id"]))})
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(seen.values(), key=lambda r: (order.get(r["severity"], len(order)), r["id"]))
