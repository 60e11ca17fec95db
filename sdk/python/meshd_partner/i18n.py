"""The command's messages in English, French, Spanish, German and Arabic (``locales/<lang>.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources

LANGUAGES = ("en", "fr", "es", "de", "ar")
DEFAULT = "en"


@cache
def catalog(lang: str) -> Mapping[str, str]:
    text = (resources.files("meshd_partner") / "locales" / f"{lang}.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def detect_language(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``--lang`` if it names a language we have, else LC_ALL / LC_MESSAGES / LANG; English otherwise."""
    env = os.environ if environ is None else environ
    candidates = [explicit] if explicit else [env.get("LC_ALL"), env.get("LC_MESSAGES"), env.get("LANG")]
    for value in candidates:
        if not value:
            continue
        code = value.split(".")[0].split("@")[0].split("_")[0].split("-")[0].lower()
        if code in LANGUAGES:
            return code
    return DEFAULT


class Messages:
    def __init__(self, lang: str = DEFAULT):
        self.lang = lang if lang in LANGUAGES else DEFAULT

    def __call__(self, key: str, **values: object) -> str:
        text = catalog(self.lang).get(key) or catalog(DEFAULT)[key]
        return text.format(**values)
