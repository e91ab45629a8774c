"""Secrets the database keeps but must not show: sealed with a key derived from the
installation's KIZUNA_SECRET_KEY, so a copy of the database (a backup, a dump handed to a
contractor) does not carry them in the clear.

`cryptography`'s Fernet (AES-128-CBC + HMAC-SHA256, versioned tokens) seals; the key is the
secret key put through HKDF-SHA256 with a purpose, so each kind of secret gets its own key and
none of them is the key that signs sessions and CSRF tokens.

Changing KIZUNA_SECRET_KEY makes sealed values unreadable (`Unreadable`): for the TOTP secrets
that means each account's second factor must be set up again (`kizuna staff reset-totp`).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class Unreadable(Exception):
    """A sealed value that this installation's key does not open (the key was changed)."""


class Sealer:
    def __init__(self, secret_key: str, purpose: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"kizuna:{purpose}".encode()).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as error:
            raise Unreadable("sealed with another key") from error
