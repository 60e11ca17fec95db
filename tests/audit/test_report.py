"""The audit report: every language, Arabic right to left, locale scores, escaped details, PDF, Markdown tables."""

from __future__ import annotations

import copy
import io
import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from meshd.i18n import LANGUAGES, Translator, catalog
from meshd_plugins.audit.catalog import CHECK_IDS as catalog_check_ids
from meshd_plugins.audit.report import check_key, render_html, render_markdown, render_pdf

EXAMPLE = Path(__file__).with_name("example_result.json")
# Every check id of the catalog: the report names each in every language.
CHECK_IDS = sorted(catalog_check_ids)


@pytest.fixture
def result() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_check_has_a_title_and_a_remediation_in_every_language(lang: str) -> None:
    messages = catalog(lang)
    missing = [f"{check_key(c)}.{part}" for c in CHECK_IDS for part in ("title", "remediation")
               if not messages.get(f"{check_key(c)}.{part}")]
    assert not missing, f"locales/{lang}/audit.yaml lacks {missing}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_renders_labels_titles_and_remediations_in_that_language(result: dict, lang: str) -> None:
    t = Translator(lang)
    html = render_html(result, lang)
    text = text_of(html)
    assert f'<html lang="{lang}" dir="{"rtl" if lang == "ar" else "ltr"}">' in html
    for key in ("title", "summary", "remediation", "silent_regions", "severity.critical", "status.not_assessed"):
        assert t(f"audit.report.{key}") in text, key
    assert t("audit.check.transit_nats_tls.title") in text
    assert t("audit.check.keys_rotation.remediation").split("`")[0].strip() in text
    markdown = render_markdown(result, lang)
    assert markdown.startswith(f"# {t('audit.report.title')}\n")
    assert t("audit.check.logging_audit_chains.title") in markdown


def test_arabic_is_laid_out_right_to_left_and_english_details_keep_their_direction(result: dict) -> None:
    html = render_html(result, "ar")
    assert '<html lang="ar" dir="rtl">' in html
    detail = "keyring billing: version 2 is 97 days old (rotation period 90 days)"
    assert f'dir="ltr">{detail}</td>' in html
    assert "إجابة" in html or "أجابت" in html


@pytest.mark.parametrize(("lang", "expected"), [("en", "66.7%"), ("fr", "66,7\xa0%"), ("de", "66,7\xa0%"),
                                                ("es", "66,7\xa0%"), ("ar", "66.7")])
def test_scores_are_formatted_for_the_locale(result: dict, lang: str, expected: str) -> None:
    # The ISO framework scores 0.667: one decimal, the locale's separator and percent sign.
    assert expected in render_html(result, lang)
    assert expected in render_markdown(result, lang)


def test_a_control_nothing_assessed_has_no_score_and_says_so(result: dict) -> None:
    markdown = render_markdown(result, "en")
    assert "| A1.2 | Recovery infrastructure | — | not assessed |" in markdown


def test_html_escapes_details_and_markdown_neutralises_them(result: dict) -> None:
    hostile = "<script>alert(1)</script> | **bold** `tick`"
    result = copy.deepcopy(result)
    for check in result["checks"]:
        if check["id"] == "transit.nats_tls" and check["status"] == "fail":
            check["detail"] = hostile
    result["regions"]["ca-central-1"]["error"] = "<img src=x onerror=alert(2)>"
    html = render_html(result, "en")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    markdown = render_markdown(result, "en")
    assert "<script>" not in markdown and "**bold**" not in markdown
    assert r"\<script\>alert(1)\</script\> \| \*\*bold\*\* \`tick\`" in markdown


def test_failed_controls_are_grouped_by_severity_with_region_detail_and_remediation(result: dict) -> None:
    markdown = render_markdown(result, "en")
    soc2 = markdown.split("## SOC 2: 50%")[1].split("## ISO")[0]
    headings = re.findall(r"^### (\w+)$", soc2, flags=re.M)
    assert headings == ["Critical", "High", "Medium"]
    critical = soc2.split("### Critical")[1].split("### High")[0]
    assert "| CC6.6 |" in critical and "eu-central-1" in critical and "is plaintext" in critical
    # A check that could not run is a finding too, and says it did not run.
    assert "the check could not run: timed out after 5 s" in soc2
    remediation = markdown.split("## Remediation")[1]
    assert remediation.count("\n- ") == 5  # five distinct failed checks, one line each
    assert "`meshd keys rotate <keyring>`" in remediation
    # Passing checks are not findings.
    assert "access.region_impersonation" not in markdown


def test_regions_that_did_not_answer_are_named(result: dict) -> None:
    markdown = render_markdown(result, "en")
    assert "## Regions that did not answer" in markdown
    assert "- **ca-central-1**: no answer within 5 s" in markdown
    assert "2 of 3 answered" in markdown
    del result["regions"]["ca-central-1"]
    assert "did not answer" not in render_markdown(result, "en")


def test_markdown_tables_are_well_formed(result: dict) -> None:
    result["checks"][1]["detail"] = "a | b\nc"  # a pipe or a newline in a cell must not open a column or a row
    lines = render_markdown(result, "en").splitlines()
    tables: list[list[str]] = []
    previous = ""
    for line in lines:
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    assert len(tables) >= 8
    for table in tables:
        columns = [len(re.split(r"(?<!\\)\|", row)) - 2 for row in table]
        assert len(set(columns)) == 1, table
        assert re.fullmatch(r"\|(---\|)+", table[1]), table[1]
        assert all(row.endswith("|") and row.startswith("| ") for row in [table[0], *table[2:]])


def test_pdf_names_every_framework() -> None:
    from pypdf import PdfReader

    result = json.loads(EXAMPLE.read_text())
    pdf = render_pdf(render_html(result, "en"))
    assert pdf.startswith(b"%PDF-")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    for name in ("SOC 2", "ISO/IEC 27001:2022", "GDPR"):
        assert name in text
    assert "Compliance audit report" in text


def test_arabic_pdf_renders() -> None:
    from pypdf import PdfReader

    pdf = render_pdf(render_html(json.loads(EXAMPLE.read_text()), "ar"))
    assert "SOC 2" in " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
