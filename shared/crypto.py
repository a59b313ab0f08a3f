"""Sealing values at rest: AES-256-GCM under a key derived from a service setting.

One implementation for every service that keeps something readable but not in
the clear: members' contact details, webhooks' endpoint signing secrets. Keys are
derived with HKDF-SHA256 from the setting and a ``purpose`` label, so one setting
can feed several independent keys (members derives its blind-index key from the
same setting) and a key for one purpose opens nothing sealed for another.

A sealed value is ``base64(nonce || ciphertext || tag)`` with a random 96-bit
nonce; tampering or the wrong key fails with ``cryptography``'s ``InvalidTag``.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


def derive_key(secret: str, purpose: bytes) -> bytes:
    """A 256-bit key for ``purpose`` from a configured secret (HKDF-SHA256, no salt)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode()
    )


class Sealer:
    def __init__(self, secret: str, purpose: bytes) -> None:
        self._aead = AESGCM(derive_key(secret, purpose))

    def seal(self, value: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), None)
        return base64.b64encode(nonce + sealed).decode()

    def open(self, token: str) -> str:
        blob = base64.b64decode(token)
        return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], None).decode()
