"""Secrets at rest (webhook URLs and signing secrets), so a database dump alone reveals none.

Fernet (AES-128-CBC with HMAC-SHA256, authenticated) under ENCRYPTION_KEY; with no key set, one
is derived from SECRET_KEY with HKDF-SHA256, so the embedded default needs no configuration.
ENCRYPTION_KEY may list several keys, newest first: values are encrypted with the first and
decrypted with any (MultiFernet), which is how a key is rotated.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from quantdesk.settings import Settings

# Changing this changes every derived key: stored secrets would no longer decrypt.
_HKDF_INFO = b"quantdesk: secrets at rest, v1"


class DecryptionFailed(Exception):
    """The ciphertext was made with a key that is not configured, or it was tampered with."""


def derive_key(secret: str) -> bytes:
    """A Fernet key derived from another secret (SECRET_KEY)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


def _box(settings: Settings) -> MultiFernet:
    keys = [key.strip() for key in settings.ENCRYPTION_KEY.split(",") if key.strip()]
    if not keys:
        return MultiFernet([Fernet(derive_key(settings.secret("SECRET_KEY")))])
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(settings: Settings, plaintext: str) -> str:
    return _box(settings).encrypt(plaintext.encode()).decode("ascii")


def decrypt(settings: Settings, ciphertext: str) -> str:
    try:
        return _box(settings).decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, ValueError) as exc:
        raise DecryptionFailed(
            "cannot decrypt a stored secret: ENCRYPTION_KEY (or SECRET_KEY) changed"
        ) from exc
