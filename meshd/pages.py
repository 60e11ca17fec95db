"""Printable pages shared by the plugins that make them (invoices, audit reports): templates, direction, PDF.

Imported only by code that renders, never at start-up: it brings jinja2
(and WeasyPrint on the first PDF).
"""

from __future__ import annotations

import unicodedata
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined


class RenderError(RuntimeError):
    """A page cannot be rendered (PDF support is not installed)."""


@cache
def page_environment(package: str) -> Environment:
    """The jinja2 environment of ``package``'s ``templates/`` directory.

    Autoescape always (not by file extension): what pages show (tenant names,
    addresses, a check's detail quoting a server error) is data, never markup.
    """
    return Environment(loader=PackageLoader(package, "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def text_direction(text: str, page_rtl: bool) -> str:
    """``ltr`` or ``rtl`` from the first strong letter of ``text``; the page's direction without one.

    Values in another script than the page's (an English detail, "Meshd Middle
    East W.L.L.") set in an Arabic paragraph would move their final period to
    the other side: each such value gets its own direction.
    """
    for char in str(text):
        kind = unicodedata.bidirectional(char)
        if kind == "L":
            return "ltr"
        if kind in ("R", "AL"):
            return "rtl"
    return "rtl" if page_rtl else "ltr"


def html_to_pdf(html: str) -> bytes:
    """``html`` laid out as a PDF by WeasyPrint; :class:`RenderError` when WeasyPrint is not installed."""
    try:
        from weasyprint import HTML  # type: ignore[import-untyped]
    except ImportError as exc:  # installed with the extra: pip install 'meshd[billing]'
        raise RenderError(f"PDF output needs WeasyPrint (pip install 'meshd[billing]'): {exc}") from None
    # No base_url: a page refers to nothing outside itself, so nothing is fetched.
    pdf = HTML(string=html).write_pdf()
    assert pdf is not None  # write_pdf returns the bytes when given no target
    return bytes(pdf)
