"""Password hashing with argon2id (RFC 9106), the cost taken from the settings."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from quantdesk.settings import Settings


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)


def hasher_for(settings: Settings) -> PasswordHasher:
    return _hasher(settings.ARGON2_TIME_COST, settings.ARGON2_MEMORY_KIB)


def hash_password(settings: Settings, password: str) -> str:
    return hasher_for(settings).hash(password)


def verify_password(settings: Settings, password_hash: str, password: str) -> bool:
    try:
        return hasher_for(settings).verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_verify_time(settings: Settings, password: str) -> None:
    """Spend one verification's time for an unknown user, so timing does not reveal accounts."""
    verify_password(
        settings, _dummy_hash(settings.ARGON2_TIME_COST, settings.ARGON2_MEMORY_KIB), password
    )


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher(time_cost, memory_kib).hash("quantdesk-timing-equaliser")
