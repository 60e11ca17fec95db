"""Wrap and unwrap data keys with AWS KMS ``Encrypt`` / ``Decrypt``.

The wrap context is the KMS ``EncryptionContext`` (a str -> str map, as the
keyring gives it), so KMS itself refuses to decrypt a wrapped key for
another region, purpose or keyring, and CloudTrail records which keyring
each call was for. The key is resolved once at start (``DescribeKey``): the
KEK id recorded in keyring files is the key's ARN even when an alias is
configured. AWS's automatic key rotation is transparent: old wraps keep
decrypting under the same key ARN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from meshd.kms import KMSProvider, KMSUnavailableError, wrap_context

from .settings import AwsKmsSettings

T = TypeVar("T")
log = logging.getLogger("meshd.kms.aws")

# botocore's DEBUG log prints every request's parameters and every response body: Encrypt's
# Plaintext and Decrypt's answer are data keys. Held at INFO whatever the daemon's log level.
_QUIET_LOGGERS = ("botocore", "boto3")

# KMS answered "not this ciphertext, context or key": a mismatch, never worth retrying.
_MISMATCH_CODES = {"InvalidCiphertextException", "IncorrectKeyException"}


class AwsKmsProvider(KMSProvider):
    """A meshd KMS provider on one AWS KMS key."""

    name = "aws-kms"

    def __init__(self, settings: AwsKmsSettings):
        for name in _QUIET_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level < logging.INFO:  # NOTSET too: a later debug root level must not reach it
                logger.setLevel(logging.INFO)
        self.settings = settings
        session = boto3.session.Session(profile_name=settings.profile)
        self._client = session.client(
            "kms", region_name=settings.key_region(), endpoint_url=settings.endpoint_url,
            config=botocore.config.Config(connect_timeout=settings.timeout, read_timeout=settings.timeout,
                                          retries={"max_attempts": settings.max_attempts, "mode": "standard"}))
        self._arn = self._describe_key()

    def _describe_key(self) -> str:
        meta = self._call(lambda: self._client.describe_key(KeyId=self.settings.key))["KeyMetadata"]
        if not meta.get("Enabled", True):
            raise KMSUnavailableError(f"aws-kms: the key {meta['Arn']} is disabled")
        return str(meta["Arn"])

    def check(self) -> None:
        """DescribeKey: reachable, credentials valid, the key enabled."""
        self._describe_key()

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        ctx = wrap_context(context)
        answer = self._call(lambda: self._client.encrypt(KeyId=self._arn, Plaintext=plaintext_key,
                                                         EncryptionContext=ctx))
        return bytes(answer["CiphertextBlob"])

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        ctx = wrap_context(context)
        if not wrapped_key:
            raise ValueError("aws-kms: an empty wrapped key")
        answer = self._call(lambda: self._client.decrypt(KeyId=self._arn, CiphertextBlob=wrapped_key,
                                                         EncryptionContext=ctx))
        return bytes(answer["Plaintext"])

    def describe(self) -> dict[str, str]:
        return {"provider": self.name, "kek_id": self._arn}

    def __repr__(self) -> str:
        return f"AwsKmsProvider(key={self.settings.key!r})"

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISMATCH_CODES:
                raise ValueError(f"aws-kms: {self.settings.key} does not unwrap it ({code})") from None
            raise KMSUnavailableError(f"aws-kms: {self.settings.key}: {_reason(exc)}") from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:  # endpoint, credentials, timeouts
            raise KMSUnavailableError(f"aws-kms: {self.settings.key}: {_reason(exc)}") from None


def _reason(exc: Exception) -> Any:
    # botocore's messages name the operation, the error code and the endpoint; never a request body.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
