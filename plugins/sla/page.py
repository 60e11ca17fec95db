"""The dashboard page: a template of translated labels only; its figures come from ``GET /v1/sla/daily``."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from meshd import Translator
from meshd.i18n import LANGUAGES
from meshd.pages import page_environment

DAYS = 90
LABELS = ("uptime", "plan", "objective", "burn", "firing", "opened", "detected", "resolved", "ttd", "ttr",
          "no_incidents", "missing", "failed")


def render_dashboard(lang: str | None, runtime: Any) -> str:
    fallback = runtime.daemon.config.daemon.lang if runtime is not None else "en"
    t = Translator(lang if lang in LANGUAGES else fallback)
    labels = {k: t(f"sla.page.{k}") for k in LABELS}
    labels.update(locale=t.lang, rtl=t.rtl)
    template = page_environment("meshd_plugins.sla").get_template("dashboard.html")
    return template.render(t=t, lang=t.lang, rtl=t.rtl, days=DAYS, labels=labels, prefix="")


@cache
def chart_js() -> bytes:
    """Chart.js 4 (MIT, its license beside it in static/), vendored: the page works with no network."""
    return (resources.files("meshd_plugins.sla") / "static" / "chart.umd.min.js").read_bytes()
