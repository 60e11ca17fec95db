"""Encrypted config values: finding, decrypting and rewrapping ``!encrypted meshd:vN:...``.

A config value is encrypted under the region's ``secrets`` keyring with the
context ``{"use": "config-secret"}``, so it decrypts only on a host holding
that region's keyring and KEK: a value written for eu-west-1 is useless in
us-east-1's config, and a ciphertext from another keyring (metering...) is
not accepted as a config secret.

"Stored ciphertext" for ``meshd keys rewrap --file`` is every ``!encrypted``
value in the YAML files named: they are rewritten in place (same file mode,
atomic rename), text-wise, so comments and layout stay as they were.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshd.yamlsource import EncryptedValue, KeyPath

from .errors import CiphertextError, KeysError
from .keyring import Keyring
from .settings import SECRETS_CONTEXT

ENCRYPTED_RE = re.compile(r"""!encrypted[ \t]+(?P<q>["']?)(?P<ct>meshd:v[^\s"']*)(?P=q)""")


def decrypt_config_value(ring: Keyring, value: str) -> str:
    """The plaintext of one ``!encrypted`` value; :class:`KeysError` naming the problem."""
    plain = ring.decrypt(value, SECRETS_CONTEXT)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise CiphertextError("not_utf8") from None


def encrypt_config_value(ring: Keyring, plaintext: str) -> str:
    """The YAML text ``!encrypted meshd:vN:...`` for ``plaintext``."""
    return f"!encrypted {ring.encrypt(plaintext.encode('utf-8'), SECRETS_CONTEXT)}"


def encrypted_values(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, EncryptedValue]]:
    """Every ``!encrypted`` value of a loaded YAML document, with its key path."""
    if isinstance(data, EncryptedValue):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from encrypted_values(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from encrypted_values(value, path + (i,))


@dataclass
class FileRewrap:
    """What ``meshd keys rewrap --file`` did to one file."""

    path: Path
    found: int = 0
    rewrapped: int = 0
    errors: list[tuple[int, KeysError]] = field(default_factory=list)
    """(line, error) of values that do not decrypt; the file is then left untouched."""


def rewrap_text(text: str, ring: Keyring, report: FileRewrap) -> str:
    """``text`` with every ``!encrypted`` value moved to the latest version."""

    def replace(match: re.Match[str]) -> str:
        report.found += 1
        old = match.group("ct")
        try:
            new = ring.rewrap(old, SECRETS_CONTEXT)
        except KeysError as exc:
            report.errors.append((text.count("\n", 0, match.start()) + 1, exc))
            return match.group(0)
        if new == old:
            return match.group(0)
        report.rewrapped += 1
        return f"!encrypted {match.group('q')}{new}{match.group('q')}"

    return ENCRYPTED_RE.sub(replace, text)


def rewrap_file(path: Path, ring: Keyring) -> FileRewrap:
    """Rewrap one YAML file in place; all or nothing (nothing is written if one value fails)."""
    report = FileRewrap(path)
    text = path.read_text(encoding="utf-8")
    new = rewrap_text(text, ring, report)
    if report.errors or new == text:
        return report
    mode = path.stat().st_mode & 0o7777
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, new.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return report
