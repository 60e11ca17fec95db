"""``keys.kms.settings`` of the ``vault-transit`` provider."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from meshd.kms import ProviderSettings


class TransitSettings(ProviderSettings):
    """Where the Transit key lives and how to log in."""

    provider_name = "vault-transit"

    url: str
    """The Vault/OpenBao address, e.g. ``https://vault.eu-west-1.internal:8200``."""
    key: str = Field(min_length=1)
    """The named Transit key (``bao write -f transit/keys/<key>``); one per region."""
    mount: str = "transit"
    namespace: str | None = None
    """A Vault Enterprise / OpenBao namespace."""
    auth: Literal["token", "approle"] = "token"
    token: SecretStr | None = None
    """token auth: the token itself (prefer ``token_file`` or ``$VAULT_TOKEN``/``$BAO_TOKEN``)."""
    token_file: Path | None = None
    role_id: str | None = None
    """approle auth: the role id."""
    secret_id: SecretStr | None = None
    secret_id_file: Path | None = None
    approle_mount: str = "approle"
    ca_cert: Path | None = None
    """A CA bundle to verify the server's TLS certificate (default: the system's)."""
    timeout: float = Field(default=5.0, gt=0)
    region: str | None = None

    @model_validator(mode="after")
    def _credentials(self) -> TransitSettings:
        if self.auth == "approle" and not self.role_id:
            raise ValueError("auth approle needs role_id")
        if self.auth == "approle" and not (self.secret_id or self.secret_id_file):
            raise ValueError("auth approle needs secret_id or secret_id_file")
        if self.ca_cert is not None and not self.ca_cert.is_file():
            raise ValueError(f"ca_cert {self.ca_cert} is not a file")
        return self

    def resolved_token(self) -> str:
        """token auth: the token from the settings, its file, or the environment."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            return _read_secret_file(self.token_file, "token_file")
        for var in ("VAULT_TOKEN", "BAO_TOKEN"):
            if os.environ.get(var):
                return os.environ[var]
        raise ValueError("vault-transit: keys.kms.settings.token: no token (set token, token_file or $VAULT_TOKEN)")

    def resolved_secret_id(self) -> str:
        if self.secret_id is not None:
            return self.secret_id.get_secret_value()
        assert self.secret_id_file is not None  # checked by _credentials
        return _read_secret_file(self.secret_id_file, "secret_id_file")


def _read_secret_file(path: Path, key: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"vault-transit: keys.kms.settings.{key}: {path}: {exc.strerror or exc}") from None
