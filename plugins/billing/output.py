"""``meshd invoice --format html|pdf``: the document the daemon issued, rendered on this machine.

The daemon answers with the JSON document only; the page is made by the
CLI, in the language asked for (``--lang``, default the customer's), so
that rendering needs no change to the daemon and no PDF engine on servers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from meshd.i18n import LANGUAGES

FORMATS = ["text", "json", "html", "pdf"]
RENDERED = ("html", "pdf")


def add_render_options(parser: argparse.ArgumentParser, t: Any, default: Any) -> None:
    # dest invoice_lang: the global --lang (the CLI's own language) keeps its value.
    parser.add_argument("--lang", dest="invoice_lang", choices=LANGUAGES, default=default, help=t("billing.cli.lang"))
    parser.add_argument("--out", metavar="FILE", default=default, help=t("billing.cli.out"))


def _binary_stdout(ctx: Any) -> Any:
    """Standard output as bytes when it is a file or a pipe; None for a terminal (or no byte stream)."""
    buffer = getattr(ctx.out, "buffer", None)
    if buffer is None or ctx.out.isatty():
        return None
    return buffer


def can_write(ctx: Any, args: argparse.Namespace) -> bool:
    """A PDF goes to --out or a pipe, never to a terminal; checked before the daemon is asked for anything."""
    if getattr(args, "format", None) != "pdf" or getattr(args, "out", None) or _binary_stdout(ctx) is not None:
        return True
    ctx.error(ctx.t("billing.cli.pdf_to_terminal"))
    return False


def write_rendered(ctx: Any, args: argparse.Namespace, doc: dict[str, Any]) -> bool:
    """Render ``doc`` as --format says and write it to --out or standard output; False (said why) on failure."""
    from .render import RenderError, render_html, render_pdf  # jinja2: only for commands that render

    html = render_html(doc, getattr(args, "invoice_lang", None))
    try:
        data = render_pdf(html) if args.format == "pdf" else html.encode("utf-8")
    except RenderError as exc:
        ctx.error(str(exc))
        return False
    out = getattr(args, "out", None)
    if out:
        try:
            Path(out).write_bytes(data)
        except OSError as exc:
            ctx.error(ctx.t("billing.cli.write_failed", path=out, detail=exc.strerror or str(exc)))
            return False
        ctx.print(ctx.t("billing.cli.written", number=doc["number"], path=out))
    elif args.format == "html":
        ctx.print(html)
    else:
        ctx.out.flush()
        stream = _binary_stdout(ctx)
        stream.write(data)
        stream.flush()
    return True
