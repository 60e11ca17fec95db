"""Logging: JSON lines when not on a terminal, and secrets scrubbed from every record.

Secrets (NATS passwords, decrypted config values, tokens) are registered with
:func:`register_secret` when they enter memory; the formatters replace any
occurrence in a formatted record, so even an exception message that quotes a
URL with a token never reaches the log in clear.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

_secrets: set[str] = set()
_lock = threading.Lock()
_MASK = "***"

# Attributes every LogRecord has; anything else was passed with extra= and is
# emitted as a JSON field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


MIN_SECRET_LENGTH = 8
"""Shorter values are not masked: masking is by substring, and a short value such as a
user name (``alerts``) would also mask every logger name, subject and bucket it occurs in."""


def register_secret(value: str | None) -> None:
    """Never log ``value`` (if it is long enough to be a secret rather than a word).

    Register only what is secret: a password or token, never a user name or the
    plain parts of a URL around it.
    """
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    if not _secrets:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure the root logger once for a process (``meshd run``, ``meshd demo``)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # nats-py logs every reconnect attempt at ERROR; the daemon logs its own line.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
