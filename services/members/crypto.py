"""Contact details at rest: encrypted, with a keyed lookup hash for uniqueness.

Phone numbers and e-mail addresses are stored as AES-GCM ciphertext (the shared
``Sealer``), so a copy of the database does not leak them; a blind index
(HMAC-SHA256 of the normalised value under a second derived key) lets the
database enforce uniqueness and find a member by contact without decrypting
every row.
"""

from __future__ import annotations

import hashlib
import hmac

from shared.crypto import Sealer, derive_key


class ContactVault:
    def __init__(self, secret: str) -> None:
        self._sealer = Sealer(secret, b"community/members/contact-encryption")
        self._mac_key = derive_key(secret, b"community/members/contact-lookup")

    def encrypt(self, value: str) -> str:
        return self._sealer.seal(value)

    def decrypt(self, token: str) -> str:
        return self._sealer.open(token)

    def lookup(self, normalised: str) -> str:
        return hmac.new(self._mac_key, normalised.encode(), hashlib.sha256).hexdigest()
