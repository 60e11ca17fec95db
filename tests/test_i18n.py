"""Every user-facing message exists in every language, with the same placeholders."""

from __future__ import annotations

import re
import string
from decimal import Decimal
from pathlib import Path

import pytest

from meshd.i18n import LANGUAGES, Translator, catalog, detect_language
from meshd.yamlsource import YamlError, load_yaml

ROOT = Path(__file__).resolve().parent.parent
OTHERS = [lang for lang in LANGUAGES if lang != "en"]


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_no_catalog_repeats_a_key() -> None:
    # A repeated key silently replaces the first one: `demo --help` once showed
    # "gave up after {seconds} s" as the help of --timeout.
    problems = []
    for path in sorted((ROOT / "locales").glob("*/*.yaml")):
        try:
            load_yaml(path)
        except YamlError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_english_catalog_is_not_empty() -> None:
    assert len(catalog("en")) > 50


@pytest.mark.parametrize("lang", OTHERS)
def test_every_english_key_is_translated(lang: str) -> None:
    missing = sorted(set(catalog("en")) - set(catalog(lang)))
    assert not missing, f"{lang} lacks {len(missing)} key(s): {missing[:20]}"


@pytest.mark.parametrize("lang", OTHERS)
def test_no_key_exists_only_in_a_translation(lang: str) -> None:
    extra = sorted(set(catalog(lang)) - set(catalog("en")))
    assert not extra, f"{lang} has keys English lacks: {extra[:20]}"


@pytest.mark.parametrize("lang", OTHERS)
def test_placeholders_match_english(lang: str) -> None:
    en, other = catalog("en"), catalog(lang)
    wrong = [key for key in en if key in other and placeholders(en[key]) != placeholders(other[key])]
    assert not wrong, f"{lang}: placeholders differ from English in {wrong[:20]}"


@pytest.mark.parametrize("lang", OTHERS)
def test_translations_are_not_english_copies(lang: str) -> None:
    en, other = catalog("en"), catalog(lang)
    long_keys = [k for k, v in en.items() if len(v) > 25 and k in other]
    same = [k for k in long_keys if other[k] == en[k]]
    # A few technical strings may stay as they are; most must be translated.
    assert len(same) <= max(2, len(long_keys) // 20), f"{lang}: untranslated {same[:20]}"


def test_every_key_used_in_code_exists() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']""")
    for base in ("meshd", "plugins"):
        for path in (ROOT / base).rglob("*.py"):
            used.update(pattern.findall(path.read_text()))
    missing = sorted(used - set(catalog("en")))
    assert not missing, f"keys used in code but missing from locales/en: {missing}"


def test_language_detection() -> None:
    assert detect_language("fr") == "fr"
    assert detect_language(None, {"LANG": "de_DE.UTF-8"}) == "de"
    assert detect_language(None, {"LC_ALL": "ar_BH.UTF-8", "LANG": "en_US.UTF-8"}) == "ar"
    assert detect_language(None, {"LANG": "C"}) == "en"
    assert detect_language(None, {"LANG": "ja_JP.UTF-8"}) == "en"


def test_babel_formats_money_per_locale() -> None:
    assert Translator("de").money(Decimal("1234.50"), "EUR") == "1.234,50\xa0€"
    assert Translator("en").money(Decimal("1234.50"), "USD") == "$1,234.50"
    with pytest.raises(TypeError):
        Translator("en").money(1234.5, "USD")  # type: ignore[arg-type]


def test_missing_key_falls_back_to_the_key_itself() -> None:
    assert Translator("fr")("no.such.key") == "no.such.key"
