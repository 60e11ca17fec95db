"""``meshd sla report``: the same figures as Markdown, HTML (right to left in Arabic) and PDF, in the user's language."""

from __future__ import annotations

import os
from typing import Any

import pytest

from meshd_plugins.sla.report import render_html, render_markdown, render_pdf

DOC: dict[str, Any] = {
    "period": "2026-10", "since_ms": 0, "until_ms": 1, "complete": False, "missing": {"ap-south-1": "no answer"},
    "regions": {
        "eu-west-1": {"answered": True, "availability": 0.998512, "p95_ms": 187.4, "incidents": [{"ttd_ms": 60000}],
                      "mttd_s": 60.0, "mttr_s": 1020.0},
        "ap-south-1": {"answered": False, "reason": "no answer within 2s"},
    },
    "plans": {"professional": {"objective": {"availability": "99.9", "latency_p95_ms": "500"}, "regions": {
        "eu-west-1": {"availability_met": False, "budget_left": -0.488, "latency_met": True},
        "ap-south-1": {"availability_met": None, "budget_left": None, "latency_met": None}}}},
}


def test_markdown_in_english_and_german() -> None:
    en = render_markdown(DOC, "en")
    assert en.startswith("# SLA report for 2026-10\n")
    assert "| eu-west-1 | professional | 99.9 % / 500 ms | 99.851 % | missed | -48.8 % | 187 ms | 1 | 1 min | 17 min |" in en
    assert "no answer: no answer within 2s" in en and "no answer from ap-south-1" in en
    de = render_markdown(DOC, "de")
    assert "| 99,851 % | verfehlt | -48,8 % |" in de and "17 min" in de


def test_html_is_right_to_left_in_arabic_and_escapes_data() -> None:
    html = render_html(DOC, "ar")
    assert '<html lang="ar" dir="rtl">' in html
    assert "تقرير اتفاقية مستوى الخدمة لـ 2026-10" in html and "غير محقق" in html
    hostile = {**DOC, "period": "<script>x</script>"}
    assert "<script>x" not in render_html(hostile, "en")


def test_pdf() -> None:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("WeasyPrint or Pango is missing: .ci/run installs libpango-1.0-0 and the billing extra")
        pytest.skip("WeasyPrint (the pdf extra) or Pango is not installed")
    pdf = render_pdf(render_html(DOC, "fr"))
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
