"""The keys plugin: regional key management (``docs/keys.md``).

* keyrings per region and purpose: versioned AES-256-GCM keys wrapped by a
  key-encryption key from a KMS provider (builtin ``local``);
* rotation by age and by count, minimum versions, rewrap of stored ciphertext;
* the federation's view of every region's key ages (metadata only) and the
  ``KeyRotationOverdue`` alert;
* ``!encrypted`` config secrets (``meshd secrets encrypt``);
* the envelope-encryption API for other plugins (``meshd_keyring``) and a
  region-local encrypt/decrypt service on NATS.

Other plugins use it only through hooks; the names exported here are for
type hints and error handling (``except CiphertextError``).
"""

from .errors import CiphertextError, KEKError, KeyringError, KeysError, PolicyError
from .keyring import BoundKeyring, Keyring, Policy
from .plugin import KeysPlugin

__all__ = ["BoundKeyring", "CiphertextError", "KEKError", "KeyringError", "KeysError", "KeysPlugin", "Keyring",
           "Policy", "PolicyError"]
