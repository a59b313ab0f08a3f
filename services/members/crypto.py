"""Contact details at rest: encrypted, with a keyed lookup hash for uniqueness.

Phone numbers and e-mail addresses are stored as AES-GCM ciphertext, so a copy
of the database does not leak them; a blind index (HMAC-SHA256 of the
normalised value under a second derived key) lets the database enforce
uniqueness and find a member by contact without decrypting every row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class ContactVault:
    def __init__(self, secret: str) -> None:
        raw = secret.encode()
        self._aead = AESGCM(_derive(raw, b"community/members/contact-encryption"))
        self._mac_key = _derive(raw, b"community/members/contact-lookup")

    def encrypt(self, value: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), None)
        return base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        blob = base64.b64decode(token)
        return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], None).decode()

    def lookup(self, normalised: str) -> str:
        return hmac.new(self._mac_key, normalised.encode(), hashlib.sha256).hexdigest()
