"""A versioned AES-256-GCM keyring for one region and purpose: the envelope-encryption API.

Other plugins get one through ``daemon.hooks.keyring(daemon, purpose)``::

    ring = daemon.hooks.keyring(daemon, "metering")
    token = ring.encrypt(b"acme-corp", {"tenant": "acme-corp", "field": "customer"})
    ring.decrypt(token, {"tenant": "acme-corp", "field": "customer"})   # b"acme-corp"
    ring.blind_index(b"acme-corp")     # a keyed digest, to find records without decrypting

Every ciphertext carries its key version; the latest version encrypts, any
version from ``min_decryption_version`` up decrypts. ``context`` (str -> str)
is bound as associated data together with region, purpose, key id and
version (:mod:`.aad`), so a value decrypts only in the context it was
written for. Nonces are 96 random bits; a version encrypts at most
``max_encryptions`` (2**31 by default, half the NIST SP 800-38D bound for
random nonces) before the keyring rotates by itself, counted crash-safely
(:mod:`.keyfile`).

The API is thread-safe. Key bytes live only in the AESGCM objects and the
blind-index key of this object; nothing here logs or returns them.
"""

from __future__ import annotations

import binascii
import dataclasses
import hmac
import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshd.kms import KMSProvider, KMSUnavailableError

from .aad import aad_prefix, encode_context
from .ciphertext import (
    HEADER_SIZE,
    MIN_BLOB,
    PREFIX_END,
    TEXT_PREFIX,
    blob_header,
    parse_blob,
    parse_payload,
    parse_text,
    text_prefix,
)
from .errors import CiphertextError, KEKError, KeyringError, PolicyError
from .keyfile import KeyringDoc, KeyringFile, Stamp, VersionRecord

log = logging.getLogger("meshd.keys")

Context = Mapping[str, str] | None
RewrapSource = Callable[["Keyring"], int]
RotationCallback = Callable[["Keyring", dict[str, Any], str], None]
FailureCallback = Callable[["Keyring", str], None]
"""Called with the keyring and the error code of every failed decryption (for a counter)."""

_urandom = os.urandom
_NONCE_END = HEADER_SIZE + 12
_VERSION_AT = len(TEXT_PREFIX)
_b2a = binascii.b2a_base64
_CONTEXT_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Policy:
    """How much one key version may encrypt, and how many counts a process reserves at a time."""

    max_encryptions: int = 2**31
    reserve_block: int = 2**20


def fingerprint(key: bytes, key_id: str, version: int) -> str:
    """An HMAC of a fixed label under the key: identifies a version, reveals nothing that helps recover it."""
    label = b"meshd key fingerprint/1" + key_id.encode() + version.to_bytes(4, "big")
    return hmac.digest(key, label, "sha256").hex()[:32]


class _Dec:
    """What decrypting with one version needs.

    ``last`` is ``(context, associated data)`` of the latest context used
    with this version: records come in runs of one context (a tenant's
    batch), and comparing two small dicts is much cheaper than building a
    cache key from one. Replaced whole, so a racing thread reads a
    consistent pair.
    """

    __slots__ = ("version", "aead", "aad", "last", "unwrapped_at")

    def __init__(self, version: int, aead: AESGCM, aad: bytes):
        self.version, self.aead, self.aad = version, aead, aad
        self.last: tuple[Context, bytes] = (None, aad)
        self.unwrapped_at = time.monotonic()
        """When the KMS last confirmed this key (see :meth:`Keyring.revalidate`)."""


class _Enc:
    """Encryption state of one version: its key and the block of counts this process reserved.

    Replaced whole, never mutated (but for the counter), so a thread reading
    ``keyring._enc`` sees a consistent version, key and count range.
    """

    __slots__ = ("version", "aead", "aad", "last", "header", "prefix", "counter", "end")

    def __init__(self, dec: _Dec | None, start: int, end: int):
        self.version = dec.version if dec else 0
        self.aead = dec.aead if dec else None
        self.aad = dec.aad if dec else b""
        self.last: tuple[Context, bytes] = (None, self.aad)  # as in _Dec
        self.header = blob_header(self.version) if dec else b""
        self.prefix = text_prefix(self.version) if dec else ""
        self.counter = itertools.count(start)
        self.end = end


def _exhausted() -> _Enc:
    return _Enc(None, 0, 0)


class Keyring:
    """One region's keyring for one purpose; implements :class:`meshd.kms.DataKeyring`."""

    def __init__(self, file: KeyringFile, provider: KMSProvider, policy: Policy = Policy(), *,
                 clock: Callable[[], float] = time.time, on_rotated: RotationCallback | None = None,
                 on_failure: FailureCallback | None = None, logger: logging.Logger | None = None):
        self._file = file
        self._on_failure = on_failure
        self._provider = provider
        self.policy = Policy(policy.max_encryptions, max(1, min(policy.reserve_block, policy.max_encryptions)))
        self._clock = clock
        self._on_rotated = on_rotated
        self.log = logger or log
        self._lock = threading.RLock()
        doc, stamp = file.read()
        self._check_kek(doc)
        self._doc: KeyringDoc = doc
        self._stamp: Stamp = stamp
        self._dec: dict[int, _Dec] = {}
        self._dec_hdr: dict[bytes | str, _Dec] = {}
        """Loaded versions by binary header and by text prefix (``meshd:vN:``): one lookup finds the key."""
        self._enc = _exhausted()
        self._pinned: dict[int, _Enc] = {}
        self._ctxc: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._sources: dict[str, RewrapSource] = {}
        self._dec_entry(doc.latest)  # unwrap now: a wrong KEK fails at open, not at first use
        self._index_key = self._unwrap_raw(doc, "index", doc.index_key)

    # ------------------------------------------------------------ creation

    @classmethod
    def open_or_create(cls, file: KeyringFile, provider: KMSProvider, policy: Policy = Policy(), *,
                       region: str, purpose: str, create: bool = True, clock: Callable[[], float] = time.time,
                       on_rotated: RotationCallback | None = None, on_failure: FailureCallback | None = None,
                       logger: logging.Logger | None = None) -> Keyring:
        """Open the keyring in ``file``, first writing version 1 if there is none and ``create``."""
        if create and not file.exists():
            with file.locked():
                if not file.exists():
                    file.write(cls._new_doc(provider, region, purpose, clock()))
                    (logger or log).info("keyring %s/%s created (version 1)", region, purpose)
        ring = cls(file, provider, policy, clock=clock, on_rotated=on_rotated, on_failure=on_failure, logger=logger)
        if ring._doc.region != region or ring._doc.purpose != purpose:
            raise KeyringError("keyring_mismatch", path=str(file.path), region=ring._doc.region,
                               purpose=ring._doc.purpose)
        return ring

    @staticmethod
    def _new_doc(provider: KMSProvider, region: str, purpose: str, now: float) -> KeyringDoc:
        key_id = "k-" + secrets.token_hex(8)
        described = provider.describe()
        kek = {k: described[k] for k in ("provider", "kek_id") if k in described}
        index_key = secrets.token_bytes(32)
        key = AESGCM.generate_key(256)
        doc = KeyringDoc(region=region, purpose=purpose, key_id=key_id, kek=kek,
                         index_key=provider.wrap(index_key, _wrap_context(region, purpose, key_id, "index")))
        doc.versions[1] = VersionRecord(1, now, provider.wrap(key, _wrap_context(region, purpose, key_id, "1")),
                                        fingerprint(key, key_id, 1))
        return doc

    # ------------------------------------------------------------ facts

    @property
    def region(self) -> str:
        return self._doc.region

    @property
    def purpose(self) -> str:
        return self._doc.purpose

    @property
    def name(self) -> str:
        return f"{self._doc.region}/{self._doc.purpose}"

    @property
    def key_id(self) -> str:
        return self._doc.key_id

    @property
    def latest_version(self) -> int:
        return self._doc.latest

    @property
    def min_decryption_version(self) -> int:
        return self._doc.min_decryption_version

    @property
    def min_encryption_version(self) -> int:
        return self._doc.min_encryption_version

    def created(self, version: int | None = None) -> float:
        doc = self._doc
        return doc.versions[version or doc.latest].created

    def metadata(self) -> dict[str, Any]:
        """Facts about the latest version for status and the federation view: never key bytes."""
        doc = self._doc
        rec = doc.versions[doc.latest]
        return {
            "region": doc.region,
            "purpose": doc.purpose,
            "key_id": doc.key_id,
            "version": doc.latest,
            "created": rec.created,
            "fingerprint": rec.fingerprint,
            "min_decryption_version": doc.min_decryption_version,
            "min_encryption_version": doc.min_encryption_version,
            "versions": len(doc.versions),
            "encryptions_reserved": rec.reserved,
            "max_encryptions": self.policy.max_encryptions,
            "kek": dict(doc.kek),
        }

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"Keyring({self.name!r}, version={self._doc.latest})"

    # ------------------------------------------------------------ encryption

    def encrypt(self, plaintext: bytes, context: Context = None, *, version: int | None = None) -> str:
        """``meshd:vN:<base64>`` of ``plaintext`` under the latest version (or ``version``, see below).

        ``version`` pins an older version, allowed from
        ``max(min_encryption_version, min_decryption_version)`` up: for a
        staged rollout, not for everyday use.
        """
        enc = self._enc
        if version is not None and version != enc.version:
            self._ctx_bytes(context)  # a bad context is refused before a count is reserved
            enc = self._pinned_enc(version)
        elif next(enc.counter) >= enc.end:
            self._ctx_bytes(context)
            enc = self._refill(enc)
        last = enc.last
        aad = last[1] if context == last[0] else self._aad(enc, context)
        nonce = _urandom(12)
        try:
            sealed = enc.aead.encrypt(nonce, plaintext, aad)
        except TypeError:
            raise CiphertextError("not_bytes", what="plaintext", kind=type(plaintext).__name__) from None
        return enc.prefix + _b2a(nonce + sealed, newline=False).decode("ascii")

    def seal(self, plaintext: bytes, context: Context = None) -> bytes:
        """The binary form (``MSK1 || version || nonce || ciphertext``) of :meth:`encrypt`, for records kept as bytes."""
        # The body repeats in BoundKeyring.seal: the hot path for bulk records, kept free of extra calls.
        enc = self._enc
        if next(enc.counter) >= enc.end:
            self._ctx_bytes(context)  # a bad context is refused before a count is reserved
            enc = self._refill(enc)
        last = enc.last
        aad = last[1] if context == last[0] else self._aad(enc, context)
        nonce = _urandom(12)
        try:
            return b"".join((enc.header, nonce, enc.aead.encrypt(nonce, plaintext, aad)))
        except TypeError:
            raise CiphertextError("not_bytes", what="plaintext", kind=type(plaintext).__name__) from None

    def _locate(self, ciphertext: str) -> tuple[_Dec, bytes]:
        """The loaded version a text ciphertext names, and its raw nonce + sealed record."""
        # The fast path: the "meshd:vN:" prefix of a loaded version is a key of _dec_hdr. Anything else
        # (another version, a malformed prefix, not a string) goes to parse_text, which names the problem.
        if type(ciphertext) is str:
            colon = ciphertext.find(":", _VERSION_AT, PREFIX_END)
            dec = self._dec_hdr.get(ciphertext[:colon + 1])
            if dec is not None:
                return dec, parse_payload(ciphertext[colon + 1:])
        version, raw = parse_text(ciphertext)
        return self._dec.get(version) or self._dec_entry(version), raw

    def decrypt(self, ciphertext: str, context: Context = None) -> bytes:
        """The plaintext of a text ciphertext; :class:`CiphertextError` naming the problem otherwise."""
        try:
            # _locate's fast path inline: its call and the tuple it returns were a tenth of the text
            # API's cost over bare AES-GCM + base64.
            colon = ciphertext.find(":", _VERSION_AT, PREFIX_END) if type(ciphertext) is str else -1
            dec = self._dec_hdr.get(ciphertext[:colon + 1]) if colon > 0 else None
            if dec is not None:
                raw = parse_payload(ciphertext[colon + 1:])
            else:
                dec, raw = self._locate(ciphertext)
            last = dec.last
            aad = last[1] if context == last[0] else self._aad(dec, context)
            try:
                return dec.aead.decrypt(raw[:12], raw[12:], aad)
            except InvalidTag:
                raise CiphertextError("auth_failed", keyring=self.name, version=dec.version) from None
        except CiphertextError as exc:
            self._failed(exc)
            raise

    def open(self, blob: bytes, context: Context = None) -> bytes:
        """The plaintext of a binary ciphertext from :meth:`seal`."""
        try:
            if type(blob) is not bytes:
                return self._open(blob, self._ctx_bytes(context))
            dec = self._dec_hdr.get(blob[:HEADER_SIZE])
            if dec is None or len(blob) < MIN_BLOB:
                self._ctx_bytes(context)  # a bad context is named before a bad blob, as on every path
                dec = self._dec_entry(parse_blob(blob))
            last = dec.last
            aad = last[1] if context == last[0] else self._aad(dec, context)
            try:
                return dec.aead.decrypt(blob[HEADER_SIZE:_NONCE_END], blob[_NONCE_END:], aad)
            except InvalidTag:
                raise CiphertextError("auth_failed", keyring=self.name, version=dec.version) from None
        except CiphertextError as exc:
            self._failed(exc)
            raise

    def _open(self, blob: bytes, ctx: bytes) -> bytes:
        if type(blob) is not bytes:
            if not isinstance(blob, (bytearray, memoryview)):
                raise CiphertextError("not_bytes", what="ciphertext", kind=type(blob).__name__)
            blob = bytes(blob)
        dec = self._dec_hdr.get(blob[:HEADER_SIZE])
        if dec is None or len(blob) < MIN_BLOB:
            dec = self._dec_entry(parse_blob(blob))
        try:
            return dec.aead.decrypt(blob[HEADER_SIZE:_NONCE_END], blob[_NONCE_END:], dec.aad + ctx)
        except InvalidTag:
            raise CiphertextError("auth_failed", keyring=self.name, version=dec.version) from None

    def _ctx_bytes(self, context: Context) -> bytes:
        """The encoded context, memoized: callers reuse a few contexts (one per tenant) over and over."""
        if not context:
            return b""
        try:
            key = tuple(context.items())
            hit = self._ctxc.get(key)
        except (TypeError, AttributeError):  # unhashable values, or not a mapping: let the encoder say which
            return encode_context(context)
        if hit is None:
            hit = encode_context(context)
            if len(self._ctxc) >= _CONTEXT_CACHE_SIZE:
                self._ctxc = {}
            self._ctxc[key] = hit
        return hit

    def _aad(self, state: _Dec | _Enc, context: Context) -> bytes:
        """The associated data of ``context`` under ``state``'s version, remembered as its ``last``."""
        aad = state.aad + self._ctx_bytes(context)
        # A private copy: the caller may change its dict after this call.
        state.last = (dict(context) if context else context, aad)
        return aad

    def bind(self, context: Context) -> BoundKeyring:
        """This keyring with ``context`` fixed: the fastest path for many records of one context."""
        return BoundKeyring(self, encode_context(context))

    def blind_index(self, value: bytes) -> str:
        """32 hex digits of HMAC-SHA256 under the keyring's index key (not rotated: lookups stay stable)."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise CiphertextError("not_bytes", what="value", kind=type(value).__name__)
        return hmac.digest(self._index_key, value, "sha256").hex()[:32]

    def needs_rewrap(self, ciphertext: str) -> bool:
        """True when ``ciphertext`` (text) is not under the latest version."""
        return parse_text(ciphertext)[0] != self._doc.latest

    def rewrap(self, ciphertext: str, context: Context = None) -> str:
        """``ciphertext`` moved to the latest version (checked, and returned as is if already there)."""
        version, _ = parse_text(ciphertext)
        plaintext = self.decrypt(ciphertext, context)
        if version == self._doc.latest:
            return ciphertext
        return self.encrypt(plaintext, context)

    def rewrap_blob(self, blob: bytes, context: Context = None) -> bytes:
        """The binary form of :meth:`rewrap`."""
        version = parse_blob(bytes(blob))
        plaintext = self.open(blob, context)
        if version == self._doc.latest:
            return bytes(blob)
        return self.seal(plaintext, context)

    # ------------------------------------------------------------ stored ciphertext

    def register_rewrap_source(self, name: str, source: RewrapSource) -> None:
        """Let ``meshd keys rewrap`` move a plugin's stored ciphertext to the latest version.

        ``source(keyring)`` rewrites its records with :meth:`rewrap` /
        :meth:`rewrap_blob` and returns how many it changed. It runs in a
        worker thread; it must be safe to run again after a crash halfway.
        """
        self._sources[name] = source

    def rewrap_sources(self) -> dict[str, dict[str, Any]]:
        """Run every registered source: ``{name: {"rewrapped": n}}`` or ``{name: {"error": text}}``."""
        results: dict[str, dict[str, Any]] = {}
        for name, source in list(self._sources.items()):
            try:
                results[name] = {"rewrapped": int(source(self))}
            except Exception as exc:
                self.log.error("rewrap source %s of keyring %s failed: %s: %s", name, self.name,
                               type(exc).__name__, exc)
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return results

    # ------------------------------------------------------------ rotation and policy

    def rotate(self, reason: str = "manual") -> dict[str, Any]:
        """Add a new latest version; older ones keep decrypting. Returns the new metadata."""
        with self._lock:
            with self._file.locked():
                doc, stamp = self._file.read()
                self._apply_doc(doc, stamp)
                dec = self._add_version(doc)
                self._stamp = self._file.write(doc)
            self._install(dec)
            self._enc = _exhausted()
            meta = self.metadata()
        self._notify(meta, reason)
        return meta

    def set_min_versions(self, decryption: int | None = None, encryption: int | None = None) -> dict[str, Any]:
        """Change ``min_decryption_version`` / ``min_encryption_version`` (each 1 to latest)."""
        with self._lock:
            with self._file.locked():
                doc, stamp = self._file.read()
                self._apply_doc(doc, stamp)
                new = {"min_decryption_version": doc.min_decryption_version if decryption is None else decryption,
                       "min_encryption_version": doc.min_encryption_version if encryption is None else encryption}
                for name, value in new.items():
                    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= doc.latest:
                        raise PolicyError("bad_min_version", name=name, value=value, low=1, high=doc.latest)
                changed = (new["min_decryption_version"] != doc.min_decryption_version
                           or new["min_encryption_version"] != doc.min_encryption_version)
                if changed:
                    updated = dataclasses.replace(doc, **new)
                    stamp = self._file.write(updated)
                    self._apply_doc(updated, stamp)
            if changed:
                self.log.info("keyring %s: min_decryption_version %d, min_encryption_version %d", self.name,
                              new["min_decryption_version"], new["min_encryption_version"])
            return self.metadata()

    def revalidate(self, max_age: float, now: float | None = None) -> dict[str, list[int]]:
        """Ask the KMS again for every data key held longer than ``max_age`` seconds.

        A key the KMS unwraps again is kept (its age restarts). A key it can
        no longer unwrap (the KEK was disabled, revoked or replaced) is
        dropped from memory, so revoking a KEK stops this process within
        ``max_age``. A KMS that does not answer changes nothing: an outage
        must not stop encryption, and it is reported by the KMS check.
        Returns ``{"confirmed": [...], "dropped": [...], "unreachable": [...]}`` versions.
        """
        now = time.monotonic() if now is None else now
        out: dict[str, list[int]] = {"confirmed": [], "dropped": [], "unreachable": []}
        with self._lock:
            doc = self._doc
            for version, dec in sorted(self._dec.items()):
                if now - dec.unwrapped_at < max_age:
                    continue
                try:
                    self._unwrap(doc, version)
                except KEKError as exc:
                    if exc.params.get("unavailable"):
                        out["unreachable"].append(version)
                        continue
                    self._drop(version)
                    out["dropped"].append(version)
                    self.log.error("keyring %s: version %d dropped from memory: %s", self.name, version, exc)
                    continue
                dec.unwrapped_at = now
                out["confirmed"].append(version)
        return out

    def _drop(self, version: int) -> None:
        """Forget the data key of ``version`` (lock held); the next use unwraps it again or fails."""
        self._dec = {v: d for v, d in self._dec.items() if v != version}
        self._dec_hdr = _by_prefix(self._dec)
        self._pinned = {v: e for v, e in self._pinned.items() if v != version}
        if self._enc.version == version:
            self._enc = _exhausted()

    def rewrap_kek(self, target: KMSProvider | None = None) -> dict[str, Any]:
        """Wrap every key version and the blind-index key again, with ``target`` (default: this keyring's provider).

        With the same provider this picks up a rotated KMS key (a new Transit
        key version); with another it migrates the keyring to that KMS. The
        data keys do not change, so no ciphertext changes. Each new wrap is
        unwrapped again before the file is written: a keyring is never left
        wrapped by a KEK that cannot open it. The file is replaced in one
        atomic write, under its lock. Returns ``{"keyring", "versions", "kek"}``.
        """
        target = target or self._provider
        with self._lock:
            with self._file.locked():
                doc, stamp = self._file.read()
                self._apply_doc(doc, stamp)
                rewrapped: list[tuple[str, bytes]] = []
                labels = [("index", doc.index_key)] + [(str(v), r.wrapped) for v, r in sorted(doc.versions.items())]
                for label, wrapped in labels:
                    key = self._unwrap_raw(doc, label, wrapped)
                    if label != "index" and not hmac.compare_digest(
                            fingerprint(key, doc.key_id, int(label)), doc.versions[int(label)].fingerprint):
                        raise KeyringError("keyring_corrupt", path=str(self._file.path),
                                           detail=f"version {label} does not match its fingerprint")
                    ctx = _wrap_context(doc.region, doc.purpose, doc.key_id, label)
                    new = target.wrap(key, dict(ctx))
                    if not hmac.compare_digest(target.unwrap(new, dict(ctx)), key):
                        raise KEKError("unwrap_failed", keyring=self.name, version=label,
                                       detail="the new wrap does not unwrap to the same key")
                    rewrapped.append((label, new))
                described = target.describe()
                kek = {k: described[k] for k in ("provider", "kek_id") if k in described}
                versions = dict(doc.versions)
                for label, new in rewrapped:
                    if label != "index":
                        versions[int(label)] = dataclasses.replace(versions[int(label)], wrapped=new)
                updated = dataclasses.replace(doc, kek=kek, versions=versions, index_key=rewrapped[0][1])
                stamp = self._file.write(updated)
                self._provider = target
                self._apply_doc(updated, stamp)
        self.log.info("keyring %s: %d key version(s) rewrapped by %s %s", self.name, len(rewrapped) - 1,
                      kek.get("provider", "?"), kek.get("kek_id", ""))
        return {"keyring": self.name, "versions": len(rewrapped) - 1, "kek": kek}

    @property
    def kek(self) -> dict[str, str]:
        """The provider and KEK id recorded in the keyring file (what wraps its keys)."""
        return dict(self._doc.kek)

    def refresh(self) -> bool:
        """Re-read the file if another process changed it; True if it did."""
        with self._lock:
            stamp = self._file.stamp()
            if stamp is None:
                raise KeyringError("no_keyring", purpose=self.purpose, keys_dir=str(self._file.path.parent))
            if stamp == self._stamp:
                return False
            doc, stamp = self._file.read()
            self._apply_doc(doc, stamp)
            return True

    # ------------------------------------------------------------ internals

    def _check_kek(self, doc: KeyringDoc) -> None:
        described = self._provider.describe()
        if doc.kek.get("provider") and doc.kek["provider"] != described.get("provider", self._provider.name):
            raise KEKError("kek_mismatch", keyring=f"{doc.region}/{doc.purpose}",
                           expected=f"{doc.kek['provider']} {doc.kek.get('kek_id', '')}".strip(),
                           actual=f"{described.get('provider')} {described.get('kek_id', '')}".strip())
        if doc.kek.get("kek_id") and described.get("kek_id") and doc.kek["kek_id"] != described["kek_id"]:
            raise KEKError("kek_mismatch", keyring=f"{doc.region}/{doc.purpose}",
                           expected=doc.kek["kek_id"], actual=described["kek_id"])

    def _unwrap_raw(self, doc: KeyringDoc, version: str, wrapped: bytes) -> bytes:
        try:
            return self._provider.unwrap(wrapped, _wrap_context(doc.region, doc.purpose, doc.key_id, version))
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            # Whether the KMS did not answer (keep what we hold) or answered no (drop it).
            extra = {"unavailable": True} if isinstance(exc, KMSUnavailableError) else {}
            if version == "index":
                raise KEKError("unwrap_index_failed", keyring=f"{doc.region}/{doc.purpose}", detail=detail,
                               **extra) from None
            raise KEKError("unwrap_failed", keyring=f"{doc.region}/{doc.purpose}", version=version,
                           detail=detail, **extra) from None

    def _unwrap(self, doc: KeyringDoc, version: int) -> _Dec:
        rec = doc.versions[version]
        key = self._unwrap_raw(doc, str(version), rec.wrapped)
        if len(key) != 32 or not hmac.compare_digest(fingerprint(key, doc.key_id, version), rec.fingerprint):
            raise KeyringError("keyring_corrupt", path=str(self._file.path),
                               detail=f"version {version} does not match its fingerprint")
        return _Dec(version, AESGCM(key), aad_prefix(doc.region, doc.purpose, doc.key_id, version))

    def _install(self, dec: _Dec) -> None:
        # Copy-on-write, so lock-free readers never see a dict being changed.
        by_version = dict(self._dec)
        by_version[dec.version] = dec
        self._dec, self._dec_hdr = by_version, _by_prefix(by_version)

    def _dec_entry(self, version: int) -> _Dec:
        """The decryption state of ``version``, unwrapping it on first use; the precise error if none."""
        dec = self._dec.get(version)
        if dec is not None:
            return dec
        with self._lock:
            dec = self._dec.get(version)
            if dec is not None:
                return dec
            doc = self._doc
            if version not in doc.versions or version < doc.min_decryption_version:
                self.refresh()  # another process may have rotated (or changed the minimum) since we read
                doc = self._doc
            if version not in doc.versions:
                raise CiphertextError("unknown_version", keyring=self.name, version=version, latest=doc.latest)
            if version < doc.min_decryption_version:
                raise CiphertextError("retired_version", keyring=self.name, version=version,
                                      minimum=doc.min_decryption_version)
            dec = self._unwrap(doc, version)
            self._install(dec)
            return dec

    def _apply_doc(self, doc: KeyringDoc, stamp: Stamp) -> None:
        """Adopt a freshly read document (lock held)."""
        old = self._doc
        if doc.key_id != old.key_id:
            raise KeyringError("keyring_corrupt", path=str(self._file.path),
                               detail="the file was replaced by another keyring; restart to use it")
        self._doc, self._stamp = doc, stamp
        if doc.min_decryption_version != old.min_decryption_version:
            keep = {v: d for v, d in self._dec.items() if v >= doc.min_decryption_version}
            self._dec = keep
            self._dec_hdr = _by_prefix(keep)
        if doc.min_decryption_version != old.min_decryption_version or \
                doc.min_encryption_version != old.min_encryption_version:
            self._pinned = {}
        if doc.latest != self._enc.version:
            self._enc = _exhausted()

    def _add_version(self, doc: KeyringDoc) -> _Dec:
        """Generate, wrap and add version latest+1 to ``doc`` (not yet written)."""
        version = doc.latest + 1
        key = AESGCM.generate_key(256)
        wrapped = self._provider.wrap(key, _wrap_context(doc.region, doc.purpose, doc.key_id, str(version)))
        doc.versions[version] = VersionRecord(version, self._clock(), wrapped, fingerprint(key, doc.key_id, version))
        return _Dec(version, AESGCM(key), aad_prefix(doc.region, doc.purpose, doc.key_id, version))

    def _refill(self, old: _Enc) -> _Enc:
        """Reserve the next block of counts for the latest version, rotating first when it is used up."""
        rotated = False
        with self._lock:
            enc = self._enc
            if enc is not old and next(enc.counter) < enc.end:
                return enc  # another thread refilled meanwhile
            with self._file.locked():
                doc, stamp = self._file.read()
                self._apply_doc(doc, stamp)
                new_dec = None
                if doc.versions[doc.latest].reserved >= self.policy.max_encryptions:
                    new_dec = self._add_version(doc)
                    rotated = True
                rec = doc.versions[doc.latest]
                start = rec.reserved
                end = min(start + self.policy.reserve_block, self.policy.max_encryptions)
                rec.reserved = end
                self._stamp = self._file.write(doc)
            if new_dec is not None:
                self._install(new_dec)
            enc = _Enc(self._dec_entry(rec.version), start, end)
            next(enc.counter)  # the caller's count
            self._enc = enc
            meta = self.metadata() if rotated else None
        if meta is not None:
            self._notify(meta, "count")
        return enc

    def _pinned_enc(self, version: int) -> _Enc:
        doc = self._doc
        if version == doc.latest:
            enc = self._enc
            return enc if next(enc.counter) < enc.end else self._refill(enc)
        low = max(doc.min_encryption_version, doc.min_decryption_version)
        if not isinstance(version, int) or not low <= version <= doc.latest:
            raise PolicyError("version_not_allowed", keyring=self.name, version=version, low=low, high=doc.latest)
        enc = self._pinned.get(version)
        if enc is not None and next(enc.counter) < enc.end:
            return enc
        with self._lock:
            with self._file.locked():
                doc, stamp = self._file.read()
                self._apply_doc(doc, stamp)
                rec = doc.versions[version]
                if rec.reserved >= self.policy.max_encryptions:
                    raise PolicyError("version_exhausted", keyring=self.name, version=version)
                start = rec.reserved
                end = min(start + self.policy.reserve_block, self.policy.max_encryptions)
                rec.reserved = end
                self._stamp = self._file.write(doc)
            enc = _Enc(self._dec_entry(version), start, end)
            next(enc.counter)
            pinned = dict(self._pinned)
            pinned[version] = enc
            self._pinned = pinned
            return enc

    def _failed(self, exc: CiphertextError) -> None:
        if self._on_failure is not None:
            try:
                self._on_failure(self, exc.code)
            except Exception as err:  # a metrics hiccup must not mask the caller's error
                self.log.error("counting a decryption failure of %s: %s", self.name, err)

    def _notify(self, meta: dict[str, Any], reason: str) -> None:
        self.log.info("keyring %s rotated to version %d (%s)", self.name, meta["version"], reason)
        if self._on_rotated is not None:
            try:
                self._on_rotated(self, meta, reason)
            except Exception as exc:
                self.log.error("after rotating keyring %s: %s: %s", self.name, type(exc).__name__, exc)


def _by_prefix(versions: dict[int, _Dec]) -> dict[bytes | str, _Dec]:
    out: dict[bytes | str, _Dec] = {blob_header(v): d for v, d in versions.items()}
    out.update({text_prefix(v): d for v, d in versions.items()})
    return out


def _wrap_context(region: str, purpose: str, key_id: str, version: str) -> dict[str, str]:
    return {"region": region, "purpose": purpose, "key_id": key_id, "version": version}


class BoundKeyring:
    """A keyring with its context fixed (from :meth:`Keyring.bind`); same methods, no context argument."""

    __slots__ = ("_ring", "_ctx")

    def __init__(self, ring: Keyring, ctx: bytes):
        self._ring, self._ctx = ring, ctx

    # seal and open repeat Keyring._seal / _open inline: this is the hot path
    # for bulk records, and a call frame is a measurable part of 4 KiB's cost.

    def seal(self, plaintext: bytes) -> bytes:
        enc = self._ring._enc
        if next(enc.counter) >= enc.end:
            enc = self._ring._refill(enc)
        nonce = _urandom(12)
        try:
            return b"".join((enc.header, nonce, enc.aead.encrypt(nonce, plaintext, enc.aad + self._ctx)))
        except TypeError:
            raise CiphertextError("not_bytes", what="plaintext", kind=type(plaintext).__name__) from None

    def open(self, blob: bytes) -> bytes:
        ring = self._ring
        try:
            if type(blob) is not bytes:
                return ring._open(blob, self._ctx)
            dec = ring._dec_hdr.get(blob[:HEADER_SIZE])
            if dec is None or len(blob) < MIN_BLOB:
                dec = ring._dec_entry(parse_blob(blob))
            try:
                return dec.aead.decrypt(blob[HEADER_SIZE:_NONCE_END], blob[_NONCE_END:], dec.aad + self._ctx)
            except InvalidTag:
                raise CiphertextError("auth_failed", keyring=ring.name, version=dec.version) from None
        except CiphertextError as exc:
            ring._failed(exc)
            raise

    def encrypt(self, plaintext: bytes) -> str:
        ring = self._ring
        enc = ring._enc
        if next(enc.counter) >= enc.end:
            enc = ring._refill(enc)
        nonce = _urandom(12)
        try:
            sealed = enc.aead.encrypt(nonce, plaintext, enc.aad + self._ctx)
        except TypeError:
            raise CiphertextError("not_bytes", what="plaintext", kind=type(plaintext).__name__) from None
        return enc.prefix + _b2a(nonce + sealed, newline=False).decode("ascii")

    def decrypt(self, ciphertext: str) -> bytes:
        ring = self._ring
        try:
            dec, raw = ring._locate(ciphertext)
            try:
                return dec.aead.decrypt(raw[:12], raw[12:], dec.aad + self._ctx)
            except InvalidTag:
                raise CiphertextError("auth_failed", keyring=ring.name, version=dec.version) from None
        except CiphertextError as exc:
            ring._failed(exc)
            raise
