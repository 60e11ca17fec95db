"""User-facing text in English, French, Spanish, German and Arabic.

Catalogs live in ``locales/<lang>/<domain>.yaml`` (installed as the
``meshd_locales`` package): one domain per area (``cli``, ``membership``,
``alerts``...), nested keys, ``{name}`` placeholders. A message is looked up
as ``"<domain>.<key.path>"``. Numbers, money and dates are formatted by Babel
with CLDR data, never by hand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache, cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from babel import Locale

LANGUAGES = ("en", "fr", "es", "de", "ar")
DEFAULT = "en"
# Babel locales used for formatting in each language.
_BABEL_LOCALE = {"en": "en_US", "fr": "fr_FR", "es": "es_ES", "de": "de_DE", "ar": "ar"}


def _flatten(prefix: str, node: Any, out: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = str(node)


@cache
def domain_catalog(lang: str, domain: str) -> Mapping[str, str]:
    """The messages of one catalog file (``locales/<lang>/<domain>.yaml``), keyed ``domain.key.path``.

    Read on first use: a daemon that only ever says its ``cli`` messages does not parse and keep
    the other fifteen files of every language it speaks.
    """
    out: dict[str, str] = {}
    entry = resources.files("meshd_locales") / lang / f"{domain}.yaml"
    if domain and "/" not in domain and entry.is_file():
        _flatten(domain, yaml.safe_load(entry.read_text(encoding="utf-8")) or {}, out)
    return out


@cache
def catalog(lang: str) -> Mapping[str, str]:
    """Every message of ``lang``, keyed ``domain.key.path``."""
    out: dict[str, str] = {}
    root = resources.files("meshd_locales") / lang
    if not root.is_dir():
        return out
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out.update(domain_catalog(lang, entry.name[: -len(".yaml")]))
    return out


def detect_language(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``--lang`` if given, else the POSIX locale variables (LC_ALL, LC_MESSAGES, LANG); English otherwise."""
    env = os.environ if environ is None else environ
    candidates = [explicit] if explicit else [env.get("MESHD_LANG"), env.get("LC_ALL"),
                                                env.get("LC_MESSAGES"), env.get("LANG")]
    for value in candidates:
        if not value:
            continue
        code = value.split(".")[0].split("@")[0].split("_")[0].split("-")[0].lower()
        if code in LANGUAGES:
            return code
        if explicit:
            break
    return DEFAULT


class Translator:
    """Messages and Babel formatting for one language."""

    def __init__(self, lang: str = DEFAULT):
        self.lang = lang if lang in LANGUAGES else DEFAULT

    @cached_property
    def locale(self) -> Locale:
        # Babel and its locale data only once something is formatted: a daemon mostly only translates.
        from babel import Locale

        return Locale.parse(_BABEL_LOCALE[self.lang])

    @property
    def rtl(self) -> bool:
        return self.locale.character_order == "right-to-left"

    def _message(self, key: str, lang: str) -> str | None:
        return domain_catalog(lang, key.partition(".")[0]).get(key)

    def __call__(self, key: str, **kwargs: Any) -> str:
        text = self._message(key, self.lang) or self._message(key, DEFAULT)
        if text is None:
            return key
        try:
            return text.format(**kwargs) if kwargs else text
        except (KeyError, IndexError, ValueError):
            return text

    def has(self, key: str) -> bool:
        return self._message(key, self.lang) is not None

    def number(self, value: int | float | Decimal, digits: int | None = None) -> str:
        from babel.numbers import format_decimal

        if digits is not None:
            return format_decimal(value, format=f"#,##0.{'0' * digits}" if digits else "#,##0",
                                  locale=self.locale)
        return format_decimal(value, locale=self.locale)

    def money(self, amount: Decimal, currency: str) -> str:
        """Format an amount already rounded by the caller (Babel rounds half-even otherwise)."""
        if not isinstance(amount, Decimal):
            raise TypeError("money must be a Decimal")
        from babel.numbers import format_currency

        return format_currency(amount, currency, locale=self.locale)

    def datetime(self, value: datetime, fmt: str = "medium") -> str:
        from babel.dates import format_datetime

        return format_datetime(value, format=fmt, locale=self.locale)

    def duration(self, seconds: float) -> str:
        from babel.dates import format_timedelta

        return format_timedelta(timedelta(seconds=seconds), threshold=1.1, locale=self.locale)

    def exact_duration(self, seconds: float) -> str:
        """A duration the user wrote (``1h``, ``90m``, ``2d``) in the largest unit that holds it whole.

        :meth:`duration` rounds, which suits ages; a configured length must come back as
        written: 3600 s is "1 hour", 5400 s "90 minutes", never "2 hours".
        """
        from babel.dates import format_timedelta

        whole = round(abs(seconds))
        for unit in (604800, 86400, 3600, 60, 1):
            if whole and whole % unit == 0:
                # format_timedelta picks the first unit whose count reaches the threshold;
                # a threshold of exactly the count in our unit makes it pick that unit.
                return format_timedelta(timedelta(seconds=whole), threshold=whole // unit, locale=self.locale)
        return self.duration(seconds)
