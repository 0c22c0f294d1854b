"""Permission names, checked by name (API.md); roles grant lists of them, "*" grants all."""

from __future__ import annotations

from collections.abc import Iterable

ALL = "*"

USERS_READ = "users.read"
USERS_MANAGE = "users.manage"
AUDIT_READ = "audit.read"

KNOWN = (USERS_READ, USERS_MANAGE, AUDIT_READ)


def granted(held: Iterable[str], wanted: str) -> bool:
    held = set(held)
    return ALL in held or wanted in held
