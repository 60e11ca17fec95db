"""Where `meshd-partner auth` keeps the API key: a JSON file only its owner can read."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:7480"


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/meshd-partner/credentials.json``, else ``~/.config/meshd-partner/credentials.json``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "meshd-partner" / "credentials.json"


class CredentialsError(Exception):
    """No usable credentials file (missing, unreadable or malformed); the message names the file."""


@dataclass(frozen=True)
class Credentials:
    api_key: str
    partner_id: str
    url: str = DEFAULT_URL
    ca_file: str | None = None
    """The certificate (PEM) of a private CA the API's TLS certificate is checked against."""

    def __repr__(self) -> str:
        return f"Credentials(partner_id={self.partner_id!r}, url={self.url!r}, ca_file={self.ca_file!r})"

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        # Created 0600 from the start (never world-readable for an instant), then renamed over the old file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            data = {"api_key": self.api_key, "partner_id": self.partner_id, "url": self.url}
            if self.ca_file:
                data["ca_file"] = self.ca_file
            json.dump(data, out, indent=2)
            out.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CredentialsError(f"{path}: not found") from None
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise CredentialsError(f"{path}: not a JSON object")
        for key in ("api_key", "partner_id"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise CredentialsError(f"{path}: key {key!r} missing or not a string")
        ca_file = data.get("ca_file")
        if ca_file is not None and not isinstance(ca_file, str):
            raise CredentialsError(f"{path}: key 'ca_file' is not a string")
        return cls(data["api_key"], data["partner_id"], str(data.get("url") or DEFAULT_URL), ca_file or None)
