"""Wrap and unwrap data keys with a symmetric key on a KMIP server, binding the context locally.

Why an envelope, not KMIP's own AES-GCM: PyKMIP's client
(``ProxyKmipClient.encrypt``/``decrypt``) neither sends KMIP's
Authenticated Encryption Additional Data nor returns or accepts the
Authenticated Encryption Tag, so GCM through it would be unauthenticated
and would not bind the context. Instead, for each wrap:

1. a random 32-byte one-time key seals the data key locally with AES-GCM,
   the wrap context (:func:`meshd.kms.context_bytes`) as associated data;
2. only the one-time key goes to the KMIP server: ``Encrypt`` with the KEK,
   AES-CBC with PKCS#5 padding and a random IV of ours (operations every
   KMIP 1.2 server with symmetric encryption supports).

Unwrapping asks the server to ``Decrypt`` the one-time key and opens the
seal locally. A wrap moved to another context, or damaged anywhere (the IV
or the sealed one-time key decrypt to another key), fails the GCM tag:
:class:`ValueError`. CBC needs no integrity of its own here: whatever it
returns is only ever used as a GCM key. The KEK never leaves the server;
the one-time key and the data key exist in clear in this process only.

Wrapped form (all lengths big-endian)::

    b"MKMIP1" ‖ len(iv) (1) ‖ iv ‖ len(sealed_otk) (2) ‖ sealed_otk ‖ nonce (12) ‖ gcm ciphertext ‖ tag (16)
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kmip.core import enums
from kmip.core import exceptions as kmip_core_errors
from kmip.pie import exceptions as kmip_errors
from kmip.pie.client import ProxyKmipClient

from meshd.kms import KMSProvider, KMSUnavailableError, context_bytes, wrap_context

from .settings import KmipSettings

T = TypeVar("T")
log = logging.getLogger("meshd.kms.kmip")

MAGIC = b"MKMIP1"
NONCE_LEN = 12

# PyKMIP's KMIPProtocol logs every message it sends and receives, in hex, at DEBUG: the one-time keys
# of Encrypt and Decrypt and the Password credential. Held at INFO whatever the daemon's log level.
_QUIET_LOGGERS = ("kmip",)

_VERSIONS = {"1.2": enums.KMIPVersion.KMIP_1_2, "1.3": enums.KMIPVersion.KMIP_1_3,
             "1.4": enums.KMIPVersion.KMIP_1_4, "2.0": enums.KMIPVersion.KMIP_2_0}

_CBC = {"cryptographic_algorithm": enums.CryptographicAlgorithm.AES,
        "block_cipher_mode": enums.BlockCipherMode.CBC,
        "padding_method": enums.PaddingMethod.PKCS5}

# What a server answers to a Decrypt of bytes it cannot decrypt (a damaged or foreign wrap), or to a
# failure of its own: a mismatch if the key still answers afterwards (see unwrap), else an outage.
_REFUSAL_REASONS = {enums.ResultReason.CRYPTOGRAPHIC_FAILURE, enums.ResultReason.INVALID_FIELD,
                    enums.ResultReason.INVALID_MESSAGE, enums.ResultReason.GENERAL_FAILURE}
# No usable answer: the network, TLS, the server going away mid-request. Worth an alert and a retry.
_OUTAGE = (OSError, socket.timeout, kmip_errors.ClientConnectionFailure, kmip_errors.ClientConnectionNotOpen,
           kmip_core_errors.ConnectionClosed, kmip_core_errors.NetworkingError)


class _DecryptRefused(Exception):
    """The server refused a Decrypt for a reason that may be the ciphertext's (see ``unwrap``)."""


class KmipProvider(KMSProvider):
    """A meshd KMS provider on one AES-256 key of a KMIP server."""

    name = "kmip"

    def __init__(self, settings: KmipSettings):
        for name in _QUIET_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level < logging.INFO:  # NOTSET too: a later debug root level must not reach it
                logger.setLevel(logging.INFO)
        self.settings = settings
        self._password = settings.resolved_password()
        # One connection per request, one request at a time: PyKMIP's client is not thread-safe (check()
        # runs in a worker thread) and does not reconnect after the server restarts. Requests are rare:
        # one per key version per process, and a check every check_interval.
        self._lock = threading.Lock()
        self._check_key()  # fails now, at start, if the key is missing, unusable or not AES-256

    # ------------------------------------------------------------ KMSProvider

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        ad = context_bytes(wrap_context(context))
        one_time_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_LEN)
        sealed_key = AESGCM(one_time_key).encrypt(nonce, plaintext_key, ad)
        iv = os.urandom(16)
        sealed_otk, _ = self._request(lambda client: client.encrypt(
            one_time_key, uid=self.settings.key_id, cryptographic_parameters=dict(_CBC), iv_counter_nonce=iv))
        if not sealed_otk or len(sealed_otk) > 0xFFFF:
            raise KMSUnavailableError(f"kmip: {self._where()}: Encrypt answered no usable ciphertext")
        return b"".join([MAGIC, bytes([len(iv)]), iv, len(sealed_otk).to_bytes(2, "big"), sealed_otk,
                         nonce, sealed_key])

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        ad = context_bytes(wrap_context(context))
        iv, sealed_otk, nonce, sealed_key = _parse(wrapped_key)
        try:
            one_time_key = self._request(lambda client: client.decrypt(
                sealed_otk, uid=self.settings.key_id, cryptographic_parameters=dict(_CBC), iv_counter_nonce=iv),
                decrypting=True)
        except _DecryptRefused as refused:
            # A damaged sealed key fails the server's CBC padding check, which servers report in different
            # ways (PyKMIP's: General Failure). If the key still answers, the refusal was about these bytes.
            self._check_key()
            raise ValueError(f"kmip: key {self.settings.key_id} does not unwrap it ({refused})") from None
        if len(one_time_key) != 32:  # the padding happened to check out on a damaged ciphertext
            raise ValueError(f"kmip: key {self.settings.key_id} does not unwrap it (damaged or not for this context)")
        try:
            return AESGCM(one_time_key).decrypt(nonce, sealed_key, ad)
        except InvalidTag:
            raise ValueError(f"kmip: key {self.settings.key_id} does not unwrap it "
                             "(damaged or not for this context)") from None

    def check(self) -> None:
        """Get Attributes of the key: the server answers, knows this client, and the key is still Active."""
        self._check_key()

    def describe(self) -> dict[str, str]:
        return {"provider": self.name, "kek_id": self.settings.key_id, "host": self.settings.host,
                "port": str(self.settings.port)}

    def __repr__(self) -> str:  # the certificate paths are no secret, but a password never is shown
        return f"KmipProvider(host={self.settings.host!r}, port={self.settings.port}, key_id={self.settings.key_id!r})"

    # ------------------------------------------------------------ internals

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port} key {self.settings.key_id}"

    def _check_key(self) -> None:
        _, attributes = self._request(lambda client: client.get_attributes(
            self.settings.key_id, ["State", "Cryptographic Algorithm", "Cryptographic Length"]))
        found = {a.attribute_name.value: a.attribute_value.value for a in attributes}
        if found.get("State") != enums.State.ACTIVE:
            state = getattr(found.get("State"), "name", "unknown")
            raise KMSUnavailableError(f"kmip: {self._where()} is {state}, not Active")
        if found.get("Cryptographic Algorithm") != enums.CryptographicAlgorithm.AES \
                or found.get("Cryptographic Length") != 256:
            raise ValueError(f"kmip: keys.kms.settings.key_id: {self.settings.key_id} is not an AES-256 key")

    def _client(self) -> ProxyKmipClient:
        s = self.settings
        client = ProxyKmipClient(
            hostname=s.host, port=s.port, cert=str(s.cert_file), key=str(s.key_file), ca=str(s.ca_file),
            username=s.username, password=self._password, kmip_version=_VERSIONS[s.kmip_version],
            # Not PyKMIP's default file (~/.pykmip/pykmip.conf and the like): only these settings count.
            config_file=os.devnull)
        client.proxy.timeout = s.timeout  # ProxyKmipClient has no parameter for it (PyKMIP's default: 30 s)
        return client

    def _request(self, request: Callable[[ProxyKmipClient], T], decrypting: bool = False) -> T:
        """One request on a fresh connection; errors as KMSUnavailableError (outage) or ValueError (mismatch)."""
        with self._lock:
            client = self._client()
            try:
                client.open()
                self._verify_server_name(client)
                return request(client)
            except kmip_errors.KmipOperationFailure as exc:
                if exc.reason == enums.ResultReason.ITEM_NOT_FOUND:
                    raise KMSUnavailableError(f"kmip: {self._where()}: not found (or not visible to this "
                                              "client's certificate)") from None
                if decrypting and exc.reason in _REFUSAL_REASONS:
                    raise _DecryptRefused(_reason(exc)) from None
                raise KMSUnavailableError(f"kmip: {self._where()}: {_reason(exc)}") from None
            except _OUTAGE as exc:
                raise KMSUnavailableError(f"kmip: {self._where()}: {type(exc).__name__}: {str(exc)[:200]}") from None
            finally:
                try:
                    client.close()
                except _OUTAGE:
                    pass  # the connection is gone already; nothing to release

    def _verify_server_name(self, client: ProxyKmipClient) -> None:
        """Refuse a server whose certificate does not name ``host``.

        PyKMIP's client checks the chain against ``ca_file`` but not the name
        (its SSL context has no ``check_hostname``): any certificate of that CA,
        another region's client certificate included, would otherwise do.
        """
        sock: Any = client.proxy.socket
        cert = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        if not cert or not _names_host(cert, self.settings.host):
            raise KMSUnavailableError(f"kmip: {self.settings.host}:{self.settings.port}: the server's certificate "
                                      f"does not name {self.settings.host}")


def _parse(wrapped: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(iv, sealed one-time key, nonce, sealed data key) of a wrapped key; ValueError if it is not one."""
    bad = ValueError("kmip: not a key wrapped by the kmip provider (or truncated)")
    if not wrapped.startswith(MAGIC):
        raise bad
    at = len(MAGIC)
    if len(wrapped) < at + 1:
        raise bad
    iv_len = wrapped[at]
    iv = wrapped[at + 1:at + 1 + iv_len]
    at += 1 + iv_len
    if len(iv) != iv_len or len(wrapped) < at + 2:
        raise bad
    otk_len = int.from_bytes(wrapped[at:at + 2], "big")
    sealed_otk = wrapped[at + 2:at + 2 + otk_len]
    at += 2 + otk_len
    nonce, sealed_key = wrapped[at:at + NONCE_LEN], wrapped[at + NONCE_LEN:]
    if not iv_len or not otk_len or len(sealed_otk) != otk_len or len(nonce) != NONCE_LEN or len(sealed_key) < 16:
        raise bad
    return iv, sealed_otk, nonce, sealed_key


def _names_host(cert: dict[str, Any], host: str) -> bool:
    """Whether a peer certificate's subjectAltName names ``host`` (an IP address, or a DNS name, ``*.`` allowed)."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for kind, value in cert.get("subjectAltName", ()):
        if ip is not None and kind == "IP Address":
            try:
                if ipaddress.ip_address(value.strip()) == ip:
                    return True
            except ValueError:
                continue
        elif ip is None and kind == "DNS" and _dns_matches(value, host):
            return True
    return False


def _dns_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):  # a wildcard stands for exactly one leftmost label
        return "." in host and host.split(".", 1)[1] == pattern[2:] and bool(host.split(".", 1)[0])
    return pattern == host


def _reason(exc: kmip_errors.KmipOperationFailure) -> str:
    # The server's result reason and message; never a request payload.
    reason = getattr(exc.reason, "name", str(exc.reason))
    return f"{reason}: {str(exc.message)[:200]}"
