"""``meshd sla report``: the period's figures per region and plan as Markdown, HTML or PDF, in the user's language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from babel.numbers import format_decimal

from meshd import Translator
from meshd.pages import html_to_pdf, page_environment

FORMATS = ("md", "html", "pdf")


class Report:
    """The /v1/sla document turned into formatted strings for one language."""

    def __init__(self, doc: Mapping[str, Any], t: Translator):
        self.doc, self.t = doc, t

    def pct(self, value: float | None, places: int = 3) -> str:
        if value is None:
            return "-"
        return format_decimal(value * 100, format="0." + "0" * places, locale=self.t.locale) + " %"

    def ms(self, value: float | None) -> str:
        return "-" if value is None else format_decimal(round(value), locale=self.t.locale) + " ms"

    def duration(self, seconds: float | None) -> str:
        if seconds is None:
            return "-"
        if seconds >= 60:
            return format_decimal(round(seconds / 60, 1), locale=self.t.locale) + " min"
        return format_decimal(round(seconds, 1), locale=self.t.locale) + " s"

    def yes_no(self, met: bool | None) -> str:
        return "-" if met is None else self.t("sla.report.met" if met else "sla.report.missed")

    def rows(self) -> list[list[str]]:
        out = []
        for plan, body in self.doc["plans"].items():
            objective = body["objective"]
            for region, judged in body["regions"].items():
                f = self.doc["regions"][region]
                if not f.get("answered"):
                    out.append([region, plan, "", self.t("sla.cli.no_answer", reason=f.get("reason", "")),
                                "", "", "", "", "", ""])
                    continue
                out.append([region, plan, f"{objective['availability']} % / {objective['latency_p95_ms']} ms",
                            self.pct(f.get("availability")), self.yes_no(judged.get("availability_met")),
                            self.pct(judged.get("budget_left"), 1), self.ms(f.get("p95_ms")),
                            str(len(f.get("incidents", []))), self.duration(f.get("mttd_s")),
                            self.duration(f.get("mttr_s"))])
        return out

    def headers(self) -> list[str]:
        return [self.t(f"sla.report.col.{c}") for c in ("region", "plan", "objective", "achieved", "met", "budget",
                                                          "p95", "incidents", "mttd", "mttr")]

    def context(self) -> dict[str, Any]:
        return {"lang": self.t.lang, "rtl": self.t.rtl, "title": self.t("sla.report.title", period=self.doc["period"]),
                "intro": self.t("sla.report.intro"), "headers": self.headers(), "rows": self.rows(),
                "missing": self.t("sla.cli.incomplete", regions=", ".join(sorted(self.doc.get("missing", {}))))
                if self.doc.get("missing") else ""}


def render_markdown(doc: Mapping[str, Any], lang: str = "en") -> str:
    r = Report(doc, Translator(lang))
    ctx = r.context()
    lines = [f"# {ctx['title']}", "", ctx["intro"], "", "| " + " | ".join(ctx["headers"]) + " |",
             "|" + " --- |" * len(ctx["headers"])]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in ctx["rows"]]
    if ctx["missing"]:
        lines += ["", ctx["missing"]]
    return "\n".join(lines) + "\n"


def render_html(doc: Mapping[str, Any], lang: str = "en") -> str:
    template = page_environment("meshd_plugins.sla").get_template("report.html")
    return template.render(**Report(doc, Translator(lang)).context())


def render_pdf(html: str) -> bytes:
    return html_to_pdf(html)
